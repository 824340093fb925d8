/** What the gateway target's parent and its Warden process (./gateway-child.ts) share. */
export const FUZZ_TOKEN = 'fuzz-dicomweb-token-0123456789';

/** The gateway's in-flight state, as the child reports it over IPC after each case. */
export interface GatewayState {
  activeStow: number;
  activeWado: number;
  scansActive: number;
  scansWaiting: number;
  budgetUsed: number;
  inflight: Record<string, number>;
  spoolFiles: string[];
}
