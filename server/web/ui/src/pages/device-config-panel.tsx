import { useState } from 'preact/hooks';
import { api } from '../api/client.ts';
import { useOperator } from '../api/session.ts';
import type { DeviceConfig } from '../api/types.ts';
import { ErrorMessage } from '../components/error-message.tsx';
import { useSnapshot } from '../components/use-snapshot.ts';
import { useLiveEvent } from '../live/live-stream.ts';
import { SetVariableForm, unsetVariable, VariableValue } from './config-variable-form.tsx';

/**
 * A device's effective configuration variables: each value (a secret only marked as set), where
 * it comes from, and whether the device applied the set; operators set and unset device values.
 */
export function DeviceConfigPanel({ id }: { id: string }) {
  const path = `/api/v1/devices/${encodeURIComponent(id)}/config`;
  const config = useSnapshot((signal) => api<DeviceConfig>('GET', path, { signal }), [id]);
  // The device reports the config it applied with its inventory: heartbeats are a good moment to look again.
  useLiveEvent(
    'health',
    (event) => {
      if (event.deviceId === id && config.data && !config.data.applied) config.reloadSoon();
    },
    [id, config.data, config.reloadSoon],
  );
  const operator = useOperator();
  const canOperate = operator !== null && operator.role !== 'viewer';
  const [actionError, setActionError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const deviceScope = { scope: 'device', target: id } as const;

  const unset = async (variable: string) => {
    setBusy(true);
    setActionError(null);
    try {
      await unsetVariable(variable, deviceScope);
      config.reload();
    } catch (error) {
      setActionError((error as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const data = config.data;
  return (
    <div data-testid="device-config">
      <ErrorMessage error={config.error} />
      {data && (
        <>
          <p data-testid="config-state">
            {data.applied ? (
              <span class="badge online">applied</span>
            ) : (
              <span class="badge offline">
                pending (device reported {data.reportedHash ? data.reportedHash.slice(0, 12) : 'nothing yet'})
              </span>
            )}
          </p>
          {data.variables.length === 0 ? (
            <p class="muted">No variable applies to this device.</p>
          ) : (
            <div class="table-wrap">
              <table data-testid="config-variables">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Value</th>
                    <th scope="col">Source</th>
                    {canOperate && <th scope="col">Device value</th>}
                  </tr>
                </thead>
                <tbody>
                  {data.variables.map((variable) => (
                    <tr key={variable.name}>
                      <td>{variable.name}</td>
                      <td class="text">
                        <VariableValue variable={variable} />
                      </td>
                      <td>{variable.source}</td>
                      {canOperate && (
                        <td>
                          {variable.source === 'device' && (
                            <button type="button" disabled={busy} onClick={() => void unset(variable.name)}>
                              Unset
                            </button>
                          )}
                        </td>
                      )}
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
      {canOperate ? (
        <SetVariableForm
          label="Set a device value"
          submitLabel="Set for this device"
          scope={deviceScope}
          where="this device"
          onSet={config.reload}
        />
      ) : (
        <p class="hint">You are signed in as a viewer: setting values needs the operator role.</p>
      )}
      <ErrorMessage error={actionError} />
    </div>
  );
}
