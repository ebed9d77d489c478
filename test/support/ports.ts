// Loopback ports for tests that need an address nothing listens on.
import net from 'node:net';

/**
 * A loopback TCP port nothing listens on: bound once by the system's choice, then released, so
 * a dial to it is refused (unless another process takes it meanwhile, which the system makes
 * unlikely by not handing it out again at once).
 */
export async function unusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
