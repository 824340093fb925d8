export { ConfigSchema, ROLES, type Role, type WardenConfig, type WardenConfigInput } from './schema';
export { loadConfig, loadRuntimeConfig, validateConfig, applyEnv, ENV_OVERRIDES } from './load';
export { resolveUidHashKey, stateDirOf } from './secrets';
