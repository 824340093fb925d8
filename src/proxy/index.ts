/** Public surface of the gateway: the app factory, the server (composition root) and the seams tests fake. */
export { buildApp, type WardenApp } from './app';
export { startServer, type RunningServer, type StartOptions } from './server';
export type { AppDeps, AppContext, Scanner } from './context';
export { createUpstreamClient, type UpstreamClient } from './upstream';
export { FAILURE_REASONS } from './failure-reasons';
export { parseMediaType, ingestMultipart } from './multipart';
