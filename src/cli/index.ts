import { Command } from 'commander';
import { isWardenError } from '../core/errors';
import * as scan from './scan';
import * as fit from './fit';
import * as features from './features';
import * as evaluate from './eval';
import * as serve from './serve';
import * as send from './send';
import * as audit from './audit';
import * as model from './model';
import * as calibrate from './calibrate';

/** The CLI and the proxy are two doors into one pipeline; each command lives in its own file. */
export async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program.name('warden').description('Security gateway for medical imaging AI').version('0.1.0');
  for (const command of [scan, fit, calibrate, features, evaluate, serve, send, model, audit]) command.register(program);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (isWardenError(err)) {
      console.error(`warden: ${err.code}: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
}
