import { useState } from 'preact/hooks';
import type { ConfigVariable, ConfigVariableList } from '../../../../../protocol/api/config-variables.ts';
import { api } from '../api/client.ts';
import { useOperator } from '../api/session.ts';
import { ErrorMessage } from '../components/error-message.tsx';
import { formatTime } from '../components/format.ts';
import { Link } from '../components/router.tsx';
import { useSnapshot } from '../components/use-snapshot.ts';
import {
  SetVariableForm,
  unsetVariable,
  type VariableScope,
  VariableValue,
} from './config-variable-form.tsx';

/** `the fleet`, `tag lab`, `device 3f2a…`: a variable's scope in words. */
const scopeWords = ({ scope, target }: ConfigVariable) =>
  scope === 'fleet' ? 'the fleet' : `${scope} ${target}`;

/**
 * Configuration variables at every scope: the fleet's, each tag's and each device's own (linked
 * to its device). Operators set fleet and tag values here (device values on the device's page)
 * and unset any of them; viewers see the list.
 */
export function ConfigPage() {
  const operator = useOperator();
  const canOperate = operator !== null && operator.role !== 'viewer';
  const list = useSnapshot(
    (signal) => api<ConfigVariableList>('GET', '/api/v1/config/variables', { signal }),
    [],
  );
  const [unsetDone, setUnsetDone] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const unset = async (variable: ConfigVariable) => {
    const where = scopeWords(variable);
    if (!window.confirm(`Unset ${variable.name} for ${where}? The apps it reaches restart without it.`))
      return;
    setBusy(true);
    setError(null);
    setUnsetDone(null);
    try {
      await unsetVariable(variable.name, {
        scope: variable.scope,
        ...(variable.target !== null && { target: variable.target }),
      });
      setUnsetDone(`${variable.name} unset for ${where}.`);
      list.reload();
    } catch (failure) {
      setError((failure as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section>
      <h1>Configuration</h1>
      <p class="hint">
        Variables reach each device in its desired state and its apps as environment variables (an app
        restarts when its set changes). A device&apos;s own value wins over its tags&apos; (a later tag A→Z
        over an earlier one), which win over the fleet&apos;s. Secret values are never shown again.
      </p>
      {canOperate ? (
        <SetFleetOrTagVariable
          onSet={() => {
            setUnsetDone(null);
            list.reload();
          }}
        />
      ) : (
        <p class="hint">You are signed in as a viewer: setting values needs the operator role.</p>
      )}
      {unsetDone && (
        <p class="muted" role="status" data-testid="variable-unset">
          {unsetDone}
        </p>
      )}
      <ErrorMessage error={error ?? list.error} />
      {list.data &&
        (list.data.variables.length === 0 ? (
          <p class="muted" data-testid="no-config-variables">
            No variable is set.
          </p>
        ) : (
          <VariableTable variables={list.data.variables} onUnset={canOperate ? unset : null} busy={busy} />
        ))}
    </section>
  );
}

/** The shared set form with a scope picker: the fleet, or a tag named here (devices: on their page). */
function SetFleetOrTagVariable({ onSet }: { onSet: () => void }) {
  const [scope, setScope] = useState<'fleet' | 'tag'>('fleet');
  const [tag, setTag] = useState('');
  const chosen: VariableScope = scope === 'fleet' ? { scope } : { scope, target: tag.trim() };
  return (
    <SetVariableForm
      label="Set a variable"
      submitLabel="Set"
      scope={chosen}
      where={scope === 'fleet' ? 'the fleet' : `tag ${tag.trim()}`}
      onSet={onSet}
    >
      <label>
        Scope
        <select
          value={scope}
          onChange={(event) => setScope(event.currentTarget.value === 'tag' ? 'tag' : 'fleet')}
        >
          <option value="fleet">Fleet</option>
          <option value="tag">Tag</option>
        </select>
      </label>
      {scope === 'tag' && (
        <label>
          Tag
          <input value={tag} required onInput={(event) => setTag(event.currentTarget.value)} />
        </label>
      )}
    </SetVariableForm>
  );
}

/** The variables of one scope and target, in the API's order (fleet, tags, devices). */
interface ScopeGroup {
  key: string;
  first: ConfigVariable;
  variables: ConfigVariable[];
}

function groupByScope(variables: ConfigVariable[]): ScopeGroup[] {
  const groups: ScopeGroup[] = [];
  for (const variable of variables) {
    const key = variable.scope === 'fleet' ? 'fleet' : `${variable.scope}:${variable.target}`;
    const last = groups.at(-1);
    if (last?.key === key) last.variables.push(variable);
    else groups.push({ key, first: variable, variables: [variable] });
  }
  return groups;
}

/** A group's heading: the fleet, a tag, or a device linked to its page. */
function ScopeHeading({ variable }: { variable: ConfigVariable }) {
  if (variable.scope === 'fleet') return <>The fleet</>;
  if (variable.scope === 'tag') return <>Tag {variable.target}</>;
  const id = variable.target ?? '';
  return (
    <>
      Device <Link href={`/devices/${encodeURIComponent(id)}`}>{id}</Link>
    </>
  );
}

/** One table, a row group per scope: the override order reads top to bottom, and it fits a phone. */
function VariableTable({
  variables,
  onUnset,
  busy,
}: {
  variables: ConfigVariable[];
  onUnset: ((variable: ConfigVariable) => void) | null;
  busy: boolean;
}) {
  const columns = onUnset ? 4 : 3;
  return (
    <div class="table-wrap">
      <table data-testid="config-variable-list" class="variables">
        <caption class="visually-hidden">Configuration variables by scope: fleet, tags, devices</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Value</th>
            <th scope="col" class="wide-only">
              Updated
            </th>
            {onUnset && <th scope="col" aria-label="Actions" />}
          </tr>
        </thead>
        {groupByScope(variables).map((group) => (
          <tbody key={group.key}>
            <tr>
              <th scope="rowgroup" colSpan={columns} class="scope-heading">
                <ScopeHeading variable={group.first} />
              </th>
            </tr>
            {group.variables.map((variable) => (
              <tr key={variable.name} data-testid="config-variable-row" data-scope={group.key}>
                <td>{variable.name}</td>
                <td class="variable-value">
                  <VariableValue variable={variable} />
                </td>
                <td class="wide-only">
                  {formatTime(variable.updatedAt)} by {variable.updatedBy}
                </td>
                {onUnset && (
                  <td>
                    <button type="button" class="secondary" disabled={busy} onClick={() => onUnset(variable)}>
                      Unset
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        ))}
      </table>
    </div>
  );
}
