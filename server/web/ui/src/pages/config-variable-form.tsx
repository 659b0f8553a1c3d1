import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import type { ConfigScope } from '../../../../../protocol/api/config-variables.ts';
import { checkConfigName, CONFIG_VALUE_MAX_LENGTH } from '../../../../../protocol/device-config.ts';
import { api } from '../api/client.ts';
import { ErrorMessage } from '../components/error-message.tsx';

/** Where a value is set: the fleet, a tag (target: the tag) or a device (target: its id). */
export interface VariableScope {
  scope: ConfigScope;
  target?: string;
}

const variablePath = (name: string) => `/api/v1/config/variables/${encodeURIComponent(name)}`;

/** Removes a variable from one scope; rejects with the server's message. */
export function unsetVariable(name: string, { scope, target }: VariableScope): Promise<unknown> {
  const params = new URLSearchParams({ scope });
  if (target !== undefined) params.set('target', target);
  return api('DELETE', `${variablePath(name)}?${params}`);
}

/** A value as the API gives it: a secret's never leaves the server, only that it is set. */
export function VariableValue({ variable }: { variable: { value?: string; secret: boolean } }) {
  return variable.secret ? <em class="muted">(secret)</em> : <>{variable.value}</>;
}

/**
 * Sets a variable (name, value, secret) at the scope the caller chooses (`where` says it in
 * words); `children` are the caller's own fields (the scope picker), placed before the button. A
 * name is checked here with the server's own rule and words, so a typo is caught before the
 * request; anything else the server refuses is shown in its words.
 */
export function SetVariableForm({
  label,
  submitLabel,
  scope,
  where,
  onSet,
  children,
}: {
  label: string;
  submitLabel: string;
  scope: VariableScope;
  where: string;
  onSet: () => void;
  children?: ComponentChildren;
}) {
  const [name, setName] = useState('');
  const [value, setValue] = useState('');
  const [secret, setSecret] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const [nameInvalid, setNameInvalid] = useState(false);

  const submit = async (event: Event) => {
    event.preventDefault();
    const trimmed = name.trim();
    setError(null);
    setDone(null);
    try {
      checkConfigName(trimmed);
    } catch (refusal) {
      setNameInvalid(true);
      setError((refusal as Error).message);
      return;
    }
    setNameInvalid(false);
    setBusy(true);
    try {
      await api('PUT', variablePath(trimmed), { body: { value, secret, ...scope } });
      setName('');
      setValue('');
      setSecret(false);
      setDone(`${trimmed} set for ${where}.`);
      onSet();
    } catch (failure) {
      setError((failure as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="filters variable-form" onSubmit={(event) => void submit(event)} aria-label={label}>
      <label>
        Name
        <input
          value={name}
          required
          autocomplete="off"
          spellcheck={false}
          aria-invalid={nameInvalid || undefined}
          title="letters, digits and _, not starting with a digit"
          onInput={(event) => setName(event.currentTarget.value)}
        />
      </label>
      <label>
        Value
        <input
          value={value}
          // A secret is typed unseen, like a password; the browser is asked not to remember it.
          type={secret ? 'password' : 'text'}
          autocomplete={secret ? 'new-password' : 'off'}
          maxLength={CONFIG_VALUE_MAX_LENGTH}
          onInput={(event) => setValue(event.currentTarget.value)}
        />
      </label>
      {children}
      <label class="check">
        <input
          type="checkbox"
          checked={secret}
          onChange={(event) => setSecret(event.currentTarget.checked)}
        />
        secret
      </label>
      <button type="submit" disabled={busy}>
        {submitLabel}
      </button>
      <ErrorMessage error={error} />
      {done && (
        <p class="muted" role="status" data-testid="variable-set">
          {done}
        </p>
      )}
    </form>
  );
}
