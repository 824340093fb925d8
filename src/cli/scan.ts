import type { Command } from 'commander';

export function register(program: Command): void {
  program.command('scan').description('(not yet implemented)').action(() => {
    throw new Error('warden scan is not implemented yet');
  });
}
