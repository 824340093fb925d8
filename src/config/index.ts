export { ConfigSchema, type WardenConfig, type WardenConfigInput } from './schema';
export { loadConfig, validateConfig, applyEnv, ENV_OVERRIDES } from './load';
