import { useState } from 'preact/hooks';
import { WEBHOOK_EVENT_TYPES } from '../../../../../protocol/webhook-events.ts';
import { api } from '../api/client.ts';
import { useOperator } from '../api/session.ts';
import type {
  CreatedWebhook,
  Webhook,
  WebhookDelivery,
  WebhookDeliveryList,
  WebhookList,
} from '../api/types.ts';
import { ErrorMessage } from '../components/error-message.tsx';
import { formatTime } from '../components/format.ts';
import { navigate, useLocation } from '../components/router.tsx';
import { useSnapshot } from '../components/use-snapshot.ts';

const messageOf = (failure: unknown) => (failure instanceof Error ? failure.message : String(failure));

/** Webhooks (admin only): the receivers, adding one (its secret shown once), removing, and what was delivered. */
export function WebhooksPage() {
  const operator = useOperator();
  if (operator?.role !== 'admin')
    return (
      <section>
        <h1>Webhooks</h1>
        <p class="muted">
          Webhooks hold secrets and send requests out of the server: they need the admin role.
        </p>
      </section>
    );
  return <AdminWebhooks />;
}

function AdminWebhooks() {
  const { search } = useLocation();
  const selected = search.get('webhook');
  const [created, setCreated] = useState<CreatedWebhook | null>(null);
  const [error, setError] = useState<string | null>(null);
  const list = useSnapshot((signal) => api<WebhookList>('GET', '/api/v1/webhooks', { signal }), []);

  const remove = async (webhook: Webhook) => {
    if (!window.confirm(`Remove the webhook to ${webhook.url}? Nothing more is sent to it.`)) return;
    setError(null);
    try {
      await api('DELETE', `/api/v1/webhooks/${encodeURIComponent(webhook.id)}`);
      if (created?.id === webhook.id) setCreated(null);
      if (selected === webhook.id) navigate('/webhooks');
      list.reload();
    } catch (failure) {
      setError(messageOf(failure));
    }
  };

  return (
    <section>
      <h1>Webhooks</h1>
      <p class="hint">
        Fleet events are POSTed as JSON to each webhook&apos;s URL, signed with its secret
        (X-Boardfleet-Signature: sha256=HMAC-SHA-256 of the body). A receiver answers 2xx; anything else is
        retried with backoff.
      </p>
      <AddWebhookForm
        onAdded={(webhook) => {
          setCreated(webhook);
          list.reload();
        }}
      />
      {created && <CreatedSecret webhook={created} onDismiss={() => setCreated(null)} />}
      <ErrorMessage error={error ?? list.error} />
      {list.data &&
        (list.data.webhooks.length === 0 ? (
          <p class="muted" data-testid="no-webhooks">
            No webhook yet.
          </p>
        ) : (
          <WebhookTable webhooks={list.data.webhooks} selected={selected} onRemove={remove} />
        ))}
      {selected && <Deliveries key={selected} webhookId={selected} />}
    </section>
  );
}

function AddWebhookForm({ onAdded }: { onAdded: (webhook: CreatedWebhook) => void }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    const formElement = event.currentTarget as HTMLFormElement;
    const form = new FormData(formElement);
    setBusy(true);
    setError(null);
    try {
      const webhook = await api<CreatedWebhook>('POST', '/api/v1/webhooks', {
        body: { url: String(form.get('url') ?? '').trim(), events: form.getAll('events').map(String) },
      });
      formElement.reset();
      onAdded(webhook);
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="filters webhook-form" onSubmit={submit} aria-label="Add a webhook">
      <label>
        URL
        <input name="url" type="url" required placeholder="https://hooks.example.com/fleet" />
      </label>
      <fieldset>
        <legend>Events</legend>
        {WEBHOOK_EVENT_TYPES.map((type) => (
          <label key={type} class="check">
            <input type="checkbox" name="events" value={type} /> {type}
          </label>
        ))}
      </fieldset>
      <button type="submit" disabled={busy}>
        Add webhook
      </button>
      <ErrorMessage error={error} />
    </form>
  );
}

function CreatedSecret({ webhook, onDismiss }: { webhook: CreatedWebhook; onDismiss: () => void }) {
  return (
    <div class="notice" role="status" data-testid="webhook-secret">
      <p>
        Webhook <span class="id">{webhook.id}</span> added. Its secret, shown only this once:
      </p>
      <pre>{webhook.secret}</pre>
      <p class="hint">Give it to the receiver to check X-Boardfleet-Signature; it will not be shown again.</p>
      <button type="button" class="secondary" onClick={onDismiss}>
        Done
      </button>
    </div>
  );
}

function WebhookTable({
  webhooks,
  selected,
  onRemove,
}: {
  webhooks: Webhook[];
  selected: string | null;
  onRemove: (webhook: Webhook) => void;
}) {
  return (
    <div class="table-wrap">
      <table>
        <caption class="visually-hidden">Webhooks</caption>
        <thead>
          <tr>
            <th scope="col">URL</th>
            <th scope="col">Events</th>
            <th scope="col" class="wide-only">
              Added
            </th>
            {/* Named for screen readers without a hidden span: one would escape the scrolled table. */}
            <th scope="col" aria-label="Actions" />
          </tr>
        </thead>
        <tbody>
          {webhooks.map((webhook) => (
            <tr
              key={webhook.id}
              data-testid="webhook-row"
              aria-current={webhook.id === selected ? 'true' : undefined}
            >
              <td class="text">
                {webhook.url}
                <div class="id">{webhook.id}</div>
              </td>
              <td class="text">{webhook.events.join(', ')}</td>
              <td class="wide-only">
                {formatTime(webhook.createdAt)} by {webhook.createdBy}
              </td>
              <td>
                <button
                  type="button"
                  class="secondary"
                  onClick={() => navigate(`/webhooks?webhook=${encodeURIComponent(webhook.id)}`)}
                >
                  Deliveries
                </button>{' '}
                <button type="button" class="secondary" onClick={() => onRemove(webhook)}>
                  Remove
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Deliveries({ webhookId }: { webhookId: string }) {
  const deliveries = useSnapshot(
    (signal) =>
      api<WebhookDeliveryList>(
        'GET',
        `/api/v1/webhooks/${encodeURIComponent(webhookId)}/deliveries?limit=50`,
        {
          signal,
        },
      ),
    [webhookId],
  );
  return (
    <section aria-label="Recent deliveries">
      <h2>
        Recent deliveries{' '}
        <button type="button" class="secondary" onClick={deliveries.reload}>
          Refresh
        </button>
      </h2>
      <ErrorMessage error={deliveries.error} />
      {deliveries.data &&
        (deliveries.data.deliveries.length === 0 ? (
          <p class="muted">Nothing delivered yet.</p>
        ) : (
          <div class="table-wrap">
            <table>
              <caption class="visually-hidden">Deliveries, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Event</th>
                  <th scope="col">Status</th>
                  <th scope="col">Attempts</th>
                </tr>
              </thead>
              <tbody>
                {deliveries.data.deliveries.map((delivery) => (
                  <DeliveryRow key={delivery.id} delivery={delivery} />
                ))}
              </tbody>
            </table>
          </div>
        ))}
    </section>
  );
}

function DeliveryRow({ delivery }: { delivery: WebhookDelivery }) {
  return (
    <tr data-testid="delivery-row" data-status={delivery.status}>
      <td>
        {formatTime(delivery.createdAt)}
        <div class="id">{delivery.id}</div>
      </td>
      <td>{delivery.type}</td>
      <td class="text">
        <span class={`state delivery-${delivery.status}`}>{delivery.status}</span>
        {delivery.status === 'pending' && delivery.attempts.length > 0 && delivery.nextAttemptAt !== null && (
          <div class="hint">next try {formatTime(delivery.nextAttemptAt)}</div>
        )}
      </td>
      <td class="text">
        {delivery.attempts.length === 0 ? (
          <span class="muted">none yet</span>
        ) : (
          <ol class="attempts">
            {delivery.attempts.map((attempt) => (
              <li key={attempt.at}>
                {formatTime(attempt.at)}: {attempt.error ?? attempt.statusCode} ({attempt.durationMs} ms)
              </li>
            ))}
          </ol>
        )}
      </td>
    </tr>
  );
}
