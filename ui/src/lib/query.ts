// A fetch tied to reactive inputs, without Suspense: keeps the last data while a new request is
// in flight (no flashing), and drops answers to outdated requests.
import { createEffect, createSignal, on, type Accessor } from 'solid-js';

export interface Query<T> {
  data: Accessor<T | undefined>;
  error: Accessor<unknown>;
  loading: Accessor<boolean>;
  refetch: () => void;
}

export function createQuery<S, T>(source: Accessor<S>, fetcher: (input: S) => Promise<T>): Query<T> {
  const [data, setData] = createSignal<T | undefined>(undefined);
  const [error, setError] = createSignal<unknown>(null);
  const [loading, setLoading] = createSignal(true);
  let seq = 0;
  const run = (input: S) => {
    const mine = ++seq;
    setLoading(true);
    fetcher(input).then(
      (value) => {
        if (mine !== seq) return;
        setData(() => value);
        setError(null);
        setLoading(false);
      },
      (e) => {
        if (mine !== seq) return;
        setError(() => e ?? new Error('failed'));
        setLoading(false);
      },
    );
  };
  createEffect(on(source, run));
  return { data, error, loading, refetch: () => run(source()) };
}
