// What a domus reports about its security posture: the certificate in force, reloads, refusals.
import type { AuthCertificateInfo } from '../auth.js';

/** The certificate a domus presents in new handshakes. */
export interface CertificateReport {
  /** The identity it proves (first URI SAN, else DNS SAN, else CN). */
  readonly identity: string;
  /** SHA-256 fingerprint of the certificate, colon-separated upper-case hex. */
  readonly fingerprint256: string;
  /** When the certificate stops being valid. */
  readonly notAfter: Date;
}

/**
 * Security readings of one domus (`DomusReporting.security`): the certificate in force, how many
 * material sets were put in force or refused since the domus was built, and the calls an
 * authorization policy refused, per pattern. Read at any time; the engine and the Nest transport
 * update it.
 */
export class SecurityReport {
  #certificate: CertificateReport | undefined;
  #reloads = 0;
  #reloadsRefused = 0;
  readonly #denied = new Map<string, number>();

  /** The certificate in force; `undefined` for a report not attached to a running domus. */
  get certificate(): CertificateReport | undefined {
    return this.#certificate;
  }

  /** Material sets `Domus.reloadAuth` put in force since the domus was built. */
  get reloads(): number {
    return this.#reloads;
  }

  /**
   * Material sets an auth file watcher found on disk and refused (unreadable, invalid, key not
   * matching, expired, another identity), the old set staying in force.
   */
  get reloadsRefused(): number {
    return this.#reloadsRefused;
  }

  /** Calls refused by an authorization policy since the domus was built, by handler pattern. */
  authorizationDenied(): ReadonlyMap<string, number> {
    return new Map(this.#denied);
  }

  /** @internal The domus put `certificate` in force (at build, or by a reload). */
  noteCertificate(identity: string, certificate: AuthCertificateInfo): void {
    if (this.#certificate !== undefined) this.#reloads++;
    this.#certificate = Object.freeze({
      identity,
      fingerprint256: certificate.fingerprint256,
      notAfter: certificate.notAfter,
    });
  }

  /** @internal A watched set of files was refused. */
  countReloadRefused(): void {
    this.#reloadsRefused++;
  }

  /** @internal A call to `pattern` was refused by the authorization policy. */
  countAuthorizationDenied(pattern: string): void {
    this.#denied.set(pattern, (this.#denied.get(pattern) ?? 0) + 1);
  }
}
