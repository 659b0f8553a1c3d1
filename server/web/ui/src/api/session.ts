import { useEffect, useState } from 'preact/hooks';
import type { Me } from './types.ts';

/** Who is signed in: the name and role `GET /api/v1/me` answers for the session. */
export type Operator = Me;

type Listener = () => void;
const listeners = new Set<Listener>();
let operator: Operator | null = null;

/**
 * Who the page shows as signed in. The session itself is an HttpOnly cookie the server set at
 * sign-in: the page never holds the token, and keeps nothing in the browser's storage.
 */
export const session = {
  operator(): Operator | null {
    return operator;
  },
  /** The server has confirmed who the session belongs to (at sign-in, or after a reload). */
  confirm(who: Operator): void {
    operator = who;
    notify();
  },
  /** Forgets who was signed in; the server ended the session, or the page asked it to. */
  signOut(): void {
    operator = null;
    notify();
  },
  /** Viewers may look; operators and admins may also press buttons (the API enforces the same rule). */
  canOperate(): boolean {
    return operator !== null && operator.role !== 'viewer';
  },
  subscribe(listener: Listener): () => void {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
};

function notify(): void {
  for (const listener of listeners) listener();
}

/** Re-renders the caller when someone signs in or out. */
export function useOperator(): Operator | null {
  const [current, setCurrent] = useState(operator);
  useEffect(() => session.subscribe(() => setCurrent(session.operator())), []);
  return current;
}
