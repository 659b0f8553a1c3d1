import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from './api/client.ts';
import { type Operator, session, useOperator } from './api/session.ts';
import { Link, useLocation } from './components/router.tsx';
import { live, useLiveStatus } from './live/live-stream.ts';
import { AuditPage } from './pages/audit-page.tsx';
import { BuildsPage } from './pages/builds-page.tsx';
import { ConfigPage } from './pages/config-page.tsx';
import { DevicePage } from './pages/device-page.tsx';
import { FleetPage } from './pages/fleet-page.tsx';
import { RolloutPage } from './pages/rollout-page.tsx';
import { RolloutsPage } from './pages/rollouts-page.tsx';
import { SignInPage } from './pages/sign-in-page.tsx';
import { WebhooksPage } from './pages/webhooks-page.tsx';

export function App() {
  const operator = useOperator();
  const [checking, setChecking] = useState(() => operator === null);

  // A session cookie from an earlier visit (scripts cannot see it): ask the server whose it is.
  useEffect(() => {
    if (operator) return;
    api<Operator>('GET', '/api/v1/me', { keepSession: true })
      .then((who) => session.confirm(who))
      .catch((error: unknown) => {
        if (!(error instanceof ApiError) || error.status === 401) session.signOut();
      })
      .finally(() => setChecking(false));
  }, []);

  useEffect(() => {
    if (operator) live.start();
    else live.stop();
  }, [operator]);

  if (checking) return <p class="loading">Checking your session…</p>;
  if (!operator) return <SignInPage />;
  return <Shell operator={operator} />;
}

/** Ends the session on the server (which clears the cookie), then shows the sign-in page. */
function signOut(): void {
  api('DELETE', '/api/v1/session', { keepSession: true })
    .catch(() => undefined)
    .finally(() => session.signOut());
}

const NAV = [
  { href: '/', label: 'Fleet', matches: (path: string) => path === '/' || path.startsWith('/devices') },
  { href: '/rollouts', label: 'Rollouts', matches: (path: string) => path.startsWith('/rollouts') },
  { href: '/builds', label: 'Builds & artifacts', matches: (path: string) => path.startsWith('/builds') },
  { href: '/audit', label: 'Audit', matches: (path: string) => path.startsWith('/audit') },
  { href: '/config', label: 'Configuration', matches: (path: string) => path.startsWith('/config') },
  { href: '/webhooks', label: 'Webhooks', matches: (path: string) => path.startsWith('/webhooks') },
];

function Shell({ operator }: { operator: Operator }) {
  const { path } = useLocation();
  const status = useLiveStatus();
  // After a navigation (not on the first page) focus goes to the new content, as a page load would.
  const firstPath = useRef(path);
  useEffect(() => {
    if (path !== firstPath.current) document.getElementById('main')?.focus({ preventScroll: true });
    firstPath.current = '';
  }, [path]);
  return (
    <>
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Boardfleet</span>
        <nav aria-label="Main">
          {NAV.map((item) => (
            <Link key={item.href} href={item.href} aria-current={item.matches(path) ? 'page' : undefined}>
              {item.label}
            </Link>
          ))}
        </nav>
        <span class={`live-status live-${status}`} role="status" title="Live updates">
          {status === 'live' ? 'Live' : status === 'connecting' ? 'Connecting…' : 'Reconnecting…'}
        </span>
        <span class="who" data-testid="operator">
          {operator.name} <span class="role">{operator.role}</span>
        </span>
        <button type="button" class="secondary" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        <Page path={path} />
      </main>
    </>
  );
}

function Page({ path }: { path: string }) {
  const segments = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (segments.length === 0) return <FleetPage />;
  if (segments[0] === 'devices' && segments[1]) return <DevicePage id={segments[1]} />;
  if (segments[0] === 'rollouts' && segments[1]) return <RolloutPage id={segments[1]} />;
  if (segments[0] === 'rollouts') return <RolloutsPage />;
  if (segments[0] === 'builds') return <BuildsPage />;
  if (segments[0] === 'audit') return <AuditPage />;
  if (segments[0] === 'config') return <ConfigPage />;
  if (segments[0] === 'webhooks') return <WebhooksPage />;
  return (
    <section>
      <h1>Not found</h1>
      <p>
        There is no page at {path}. <Link href="/">Go to the fleet</Link>.
      </p>
    </section>
  );
}
