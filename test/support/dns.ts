// A real DNS server on loopback UDP (dns2) whose zone a test edits, for DNS SRV discovery tests.
import dns2 from 'dns2';

const { Packet } = dns2;
const RCODE_NXDOMAIN = 3;
const RCODE_SERVFAIL = 2;

/** One SRV record. */
export interface Srv {
  priority: number;
  weight: number;
  port: number;
  target: string;
}

/** What the test DNS server answers for one name. */
export interface Zone {
  srv?: Srv[];
  a?: { address: string; ttl: number }[];
  aaaa?: { address: string; ttl: number }[];
  /** Answer NXDOMAIN. */
  nxdomain?: boolean;
  /** Answer SERVFAIL. */
  servfail?: boolean;
  /** Never answer. */
  silent?: boolean;
}

/** A real DNS server on loopback UDP whose zone each test edits, counting the queries it gets. */
export class TestDns {
  readonly zone = new Map<string, Zone>();
  readonly queries: string[] = [];
  private readonly server = dns2.createServer({
    udp: true,
    handle: (request, send) => {
      const [question] = request.questions;
      if (question === undefined) return;
      const type =
        question.type === Packet.TYPE.SRV
          ? 'SRV'
          : question.type === Packet.TYPE.A
            ? 'A'
            : question.type === Packet.TYPE.AAAA
              ? 'AAAA'
              : String(question.type);
      this.queries.push(`${type} ${question.name}`);
      const entry = this.zone.get(question.name.toLowerCase());
      if (entry?.silent === true) return;
      const response = Packet.createResponseFromRequest(request);
      if (entry === undefined || entry.nxdomain === true) {
        response.header.rcode = RCODE_NXDOMAIN;
      } else if (entry.servfail === true) {
        response.header.rcode = RCODE_SERVFAIL;
      } else if (type === 'SRV') {
        for (const srv of entry.srv ?? []) {
          response.answers.push(Packet.createResourceFromQuestion(question, { ttl: 30, ...srv }));
        }
      } else if (type === 'A' || type === 'AAAA') {
        for (const record of (type === 'A' ? entry.a : entry.aaaa) ?? []) {
          response.answers.push(Packet.createResourceFromQuestion(question, record));
        }
      }
      void send(response);
    },
  });
  port = 0;

  async start(): Promise<void> {
    const addresses = await this.server.listen({ udp: { port: 0, address: '127.0.0.1' } });
    this.port = addresses.udp!.port;
  }

  stop(): Promise<void> {
    return this.server.close();
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  count(query: string): number {
    return this.queries.filter((q) => q === query).length;
  }

  reset(): void {
    this.zone.clear();
    this.queries.length = 0;
  }
}
