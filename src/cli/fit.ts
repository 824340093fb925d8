import type { Command } from 'commander';

export function register(program: Command): void {
  program.command('fit').description('(not yet implemented)').action(() => {
    throw new Error('warden fit is not implemented yet');
  });
}
