import { join } from 'node:path';
import type { Logger } from 'pino';
import type { AttachedBoardAccess } from '../../mcu/attached-board.ts';
import type { LogBatch } from '../../protocol/device-logs.ts';
import { type AppOutput, installedAppName } from '../update/app-bundle.strategy.ts';
import type { VmStrategy } from '../update/vm.strategy.ts';
import type { AgentLogTee } from './agent-log-tee.ts';
import { BoardCapture } from './board-capture.ts';
import { LogRing } from './log-ring.ts';
import { LogStreamer, type Workloads } from './log-streamer.ts';

/** The agent's live logs: the ring every workload writes to, and the streamer of the watches. */
export interface DeviceLogs {
  ring: LogRing;
  streamer: LogStreamer;
  /** For `AppBundleStrategy`: each line an app prints. */
  appOutput: AppOutput;
  /** For `VmStrategy`: each console line of a VM. */
  vmConsole: (artifact: string, line: string) => void;
  /**
   * The attached board's serial output becomes a source (`board:<port>`) watches may name; the
   * access returned hands the port over to every flash and probe (give it to the strategy).
   */
  captureBoard: (access: AttachedBoardAccess) => AttachedBoardAccess;
}

/**
 * Opens the ring in `<data dir>/logs` (the agent's own log joins it through `agentLog`) and the
 * streamer that answers `log-watch`; `publish`, `appRoot` and `vms` are used only once watches come.
 */
export function startDeviceLogs(options: {
  dataDir: string;
  agentLog?: AgentLogTee;
  publish: (batch: LogBatch) => Promise<boolean>;
  /** The app-bundle strategy's root, and the VM strategy (if any): the workloads a watch may name. */
  appRoot: string;
  vms: () => Pick<VmStrategy, 'activeVersion'> | null;
  logger: Logger;
}): DeviceLogs {
  const ring = new LogRing({ dir: join(options.dataDir, 'logs') });
  options.agentLog?.attach(ring);
  let board: BoardCapture | null = null;
  const streamer = new LogStreamer({
    ring,
    publish: options.publish,
    workloads: () => workloads(options.appRoot, options.vms()),
    board: () => board,
    logger: options.logger,
  });
  return {
    ring,
    streamer,
    appOutput: (line, { app, stream }) => ring.append(`app:${app}`, stream, line),
    vmConsole: (artifact, line) => ring.append(`vm:${artifact}`, 'stdout', line),
    captureBoard: (access) => {
      const capture = new BoardCapture({
        port: access.portPath,
        resolvePort: () => access.resolvePort(),
        // Loaded on first use: `serialport` is a native module (the board's strategy needs it too).
        open: async (path, baud, handlers) =>
          (await import('./serial-lines.ts')).openSerialLines(path, baud, handlers),
        append: (source, stream, text) => ring.append(source, stream, text),
        logger: options.logger,
      });
      board = capture;
      return {
        ...access,
        flash: (hexPath, signal) => capture.exclusive('flashing', () => access.flash(hexPath, signal)),
        probe: () => capture.exclusive('the Firmata probe', () => access.probe()),
      };
    },
  };
}

/** The installed app and the active VM: what a watch may name. */
function workloads(appRoot: string, vms: Pick<VmStrategy, 'activeVersion'> | null): Workloads {
  const app = installedAppName(appRoot);
  const vm = vms?.activeVersion;
  return { apps: app ? [app] : [], vms: vm ? [vm.artifact] : [] };
}
