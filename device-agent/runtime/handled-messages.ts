import { join } from 'node:path';
import { readJson, writeJsonAtomically } from '../../lib/atomic-file.ts';

interface AgentState {
  schemaVersion: 1;
  desiredVersion: number;
  /** The last command ids handled, so a redelivered command is not run twice. */
  handledCommands: string[];
}

const REMEMBERED_COMMANDS = 100;

/**
 * What the agent remembers, across restarts, of the server's messages it acted on: the broker
 * redelivers commands after a reconnect and the retained desired state on every one, and neither
 * may be acted on twice. Kept in `agent-state.json`, written before the message is acted on.
 */
export class HandledMessages {
  private readonly path: string;
  private state: AgentState;

  constructor(dataDir: string) {
    this.path = join(dataDir, 'agent-state.json');
    this.state = readJson<AgentState>(this.path) ?? {
      schemaVersion: 1,
      desiredVersion: -1,
      handledCommands: [],
    };
  }

  /** True the first time a command id comes (it is remembered from then on). */
  firstTime(commandId: string): boolean {
    if (this.state.handledCommands.includes(commandId)) return false;
    this.state.handledCommands = [...this.state.handledCommands, commandId].slice(-REMEMBERED_COMMANDS);
    this.save();
    return true;
  }

  /** True for a desired state newer than every one acted on (it is remembered from then on). */
  newer(version: number): boolean {
    if (version <= this.state.desiredVersion) return false;
    this.state.desiredVersion = version;
    this.save();
    return true;
  }

  private save(): void {
    writeJsonAtomically(this.path, this.state);
  }
}
