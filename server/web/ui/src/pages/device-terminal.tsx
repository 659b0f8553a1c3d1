import '@xterm/xterm/css/xterm.css';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { ShellServerControl } from '../../../../../protocol/device-shell.ts';
import { shellTunnelPath } from '../../../../../protocol/device-shell.ts';
import { useOperator } from '../api/session.ts';

/** The terminal's fixed size: the page has room for it, and a fixed size needs no fit add-on. */
const COLUMNS = 100;
const ROWS = 30;

/**
 * Opens the device's shell tunnel (the session cookie authenticates it, and the browser's Origin
 * header shows it comes from this server's own page) and runs it in an xterm.js terminal until
 * `onStatus` has said how it ended.
 */
async function runTerminal(
  deviceId: string,
  element: HTMLElement,
  onStatus: (status: string) => void,
): Promise<() => void> {
  // Loaded on the first "Open shell": xterm.js is most of the dashboard's weight otherwise.
  const { Terminal } = await import('@xterm/xterm');
  const terminal = new Terminal({ cols: COLUMNS, rows: ROWS, cursorBlink: true });
  terminal.open(element);
  terminal.focus();
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const socket = new WebSocket(
    `${scheme}://${location.host}${shellTunnelPath(deviceId)}?cols=${COLUMNS}&rows=${ROWS}`,
  );
  socket.binaryType = 'arraybuffer';
  let opened = false;
  let ended = false;
  const encoder = new TextEncoder();
  const typing = terminal.onData((data) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
  });
  socket.onmessage = (message: MessageEvent<ArrayBuffer | string>) => {
    if (typeof message.data !== 'string') return terminal.write(new Uint8Array(message.data));
    const control = JSON.parse(message.data) as ShellServerControl;
    if (control.type === 'opened') {
      opened = true;
      onStatus(control.mode === 'pty' ? 'connected' : 'connected (no pty on the device: no line editing)');
    } else {
      ended = true;
      onStatus(control.code === null ? `closed: ${control.reason}` : `exited with code ${control.code}`);
    }
  };
  socket.onclose = () => {
    typing.dispose();
    // A browser never sees the body of a refused upgrade: name the usual reasons.
    if (!opened && !ended)
      onStatus(
        `refused: the shell may be off for this device (boardfleet config set BOARDFLEET_SHELL=on --device ${deviceId}), or the device is offline`,
      );
    else if (!ended) onStatus('closed: the connection was lost');
  };
  onStatus('connecting…');
  return () => {
    socket.close();
    terminal.dispose();
  };
}

/** "Open shell" on the device page, for operators and admins: a terminal on the device, through the server. */
export function DeviceTerminal({ id }: { id: string }) {
  const operator = useOperator();
  const [open, setOpen] = useState(false);
  const [status, setStatus] = useState<string | null>(null);
  const screen = useRef<HTMLDivElement>(null);

  useEffect(() => {
    if (!open || !screen.current) return;
    const running = runTerminal(id, screen.current, setStatus);
    return () => void running.then((stop) => stop());
  }, [open, id]);

  if (operator === null || operator.role === 'viewer') return null;
  return (
    <div class="device-terminal">
      <h2>Shell</h2>
      <p>
        {open ? (
          <button type="button" onClick={() => setOpen(false)}>
            Close shell
          </button>
        ) : (
          <button type="button" onClick={() => setOpen(true)}>
            Open shell
          </button>
        )}{' '}
        {open && status && (
          <span class="muted" role="status" data-testid="shell-status">
            {status}
          </span>
        )}
      </p>
      {open && <div ref={screen} data-testid="shell-terminal" />}
    </div>
  );
}
