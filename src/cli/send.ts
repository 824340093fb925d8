import type { Command } from 'commander';

export function register(program: Command): void {
  program.command('send').description('(not yet implemented)').action(() => {
    throw new Error('warden send is not implemented yet');
  });
}
