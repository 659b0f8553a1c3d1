import { useState } from 'preact/hooks';
import { api } from '../api/client.ts';
import { type Operator, session } from '../api/session.ts';
import { ErrorMessage } from '../components/error-message.tsx';

export function SignInPage() {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      // The token goes to the server once; what comes back is an HttpOnly session cookie.
      const who = await api<Operator>('POST', '/api/v1/session', {
        body: { token: token.trim() },
        keepSession: true,
      });
      setToken('');
      session.confirm(who);
    } catch (failure) {
      setError(failure instanceof Error ? failure.message : String(failure));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="sign-in" id="main">
      <h1>Boardfleet</h1>
      <form onSubmit={submit}>
        <label for="token">Operator token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="current-password"
          required
          value={token}
          onInput={(event) => setToken(event.currentTarget.value)}
        />
        <p class="hint">
          The admin token is in <code>data/admin.token</code>; make others with{' '}
          <code>boardfleet tokens create-operator NAME --role viewer</code>.
        </p>
        <ErrorMessage error={error} />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}
