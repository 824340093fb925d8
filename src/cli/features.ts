import type { Command } from 'commander';

export function register(program: Command): void {
  program.command('features').description('(not yet implemented)').action(() => {
    throw new Error('warden features is not implemented yet');
  });
}
