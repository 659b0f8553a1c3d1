import { useEffect, useState } from 'preact/hooks';
import type { Me } from './types.ts';

/** Who is signed in: the name and role `GET /api/v1/me` answers for the token. */
export type Operator = Me;

const TOKEN_KEY = 'boardfleet.token';

type Listener = () => void;
const listeners = new Set<Listener>();
let operator: Operator | null = null;

export const session = {
  token(): string | null {
    return localStorage.getItem(TOKEN_KEY);
  },
  operator(): Operator | null {
    return operator;
  },
  signIn(token: string, who: Operator): void {
    localStorage.setItem(TOKEN_KEY, token);
    operator = who;
    notify();
  },
  /** Keeps the token; used once the server has confirmed who it belongs to after a reload. */
  confirm(who: Operator): void {
    operator = who;
    notify();
  },
  signOut(): void {
    localStorage.removeItem(TOKEN_KEY);
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
