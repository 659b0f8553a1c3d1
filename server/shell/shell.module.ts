import { type DynamicModule, Module, type Provider } from '@nestjs/common';
import { ShellSessionRepository } from './shell-session.repository.ts';
import { ShellSessionsController } from './shell-sessions.controller.ts';

/**
 * The remote shell's REST side (its sessions and transcripts). The terminal is a WebSocket on the
 * HTTP servers' `upgrade` event, outside Nest: see `startShellTunnel`.
 */
@Module({})
export class ShellModule {
  /** `values` are the server's long-lived parts (the database above all). */
  static forRoot(values: Provider[]): DynamicModule {
    return {
      module: ShellModule,
      controllers: [ShellSessionsController],
      providers: [...values, ShellSessionRepository],
    };
  }
}
