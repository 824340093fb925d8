import type { Command } from 'commander';

export function register(program: Command): void {
  program.command('eval').description('(not yet implemented)').action(() => {
    throw new Error('warden eval is not implemented yet');
  });
}
