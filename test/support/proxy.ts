// The fault proxy tests drive: the same one the soak command uses (lib/cli/soak/fault-proxy.ts).
export {
  FaultProxy,
  type ProxiedTraffic,
  type ProxyMode,
  type ProxyTarget,
} from '../../lib/cli/soak/fault-proxy.js';
