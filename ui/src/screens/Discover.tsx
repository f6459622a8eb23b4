import { createEffect, createSignal, For, Match, on, Show, Switch, type JSX } from 'solid-js';
import { createQuery } from '../lib/query';
import { Icon } from '../components/Icon';
import { Markdown } from '../components/Markdown';
import { cardBody } from '../lib/markdown';
import { Badge, EmptyState, ErrorNotice, ProgressBar, Spinner } from '../components/ui';
import { modelPageHref } from '../lib/errors-ui';
import { downloadFraction, isActive, STATE_LABELS } from '../lib/downloads';
import { formatBytes, formatCount, formatParams, formatPercent, formatRelative } from '../lib/format';
import { navigate, route } from '../lib/router';
import { api } from '../services';
import { AppError } from '../services/errors';
import type { HubModel, HubSearchQuery, HubSort, HubVariant, Verdict } from '../services/types';
import { downloads, upsertDownload } from '../stores/downloads';
import { libraryOnly, system } from '../stores/models';

export default function DiscoverScreen(): JSX.Element {
  return (
    <Show when={(route() as { modelId?: string | null }).modelId} fallback={<SearchView />} keyed>
      {(id) => <ModelPage id={id} />}
    </Show>
  );
}

const SIZES: { label: string; min: number | null; max: number | null }[] = [
  { label: 'Any size', min: null, max: null },
  { label: 'Under 1B', min: null, max: 1e9 },
  { label: '1B – 4B', min: 1e9, max: 4e9 },
  { label: '4B – 10B', min: 4e9, max: 10e9 },
  { label: '10B – 35B', min: 10e9, max: 35e9 },
  { label: 'Over 35B', min: 35e9, max: null },
];

// Search state lives at module level so going back from a model page keeps it.
const [q, setQ] = createSignal('');
const [mlxOnly, setMlxOnly] = createSignal(true);
const [size, setSize] = createSignal(0);
const [sort, setSort] = createSignal<HubSort>('downloads');

function SearchView(): JSX.Element {
  const [text, setText] = createSignal(q());
  let timer: ReturnType<typeof setTimeout> | undefined;
  const query = (): HubSearchQuery => {
    const s = SIZES[size()]!;
    return { q: q(), mlx_only: mlxOnly(), sort: sort(), limit: 30, min_params: s.min, max_params: s.max };
  };
  const results = createQuery(query, (qq) => api().searchHub(qq));

  return (
    <div class="page">
      <header class="page-head">
        <div>
          <h1>Discover</h1>
          <p class="muted">Models on Hugging Face that run on this machine.</p>
        </div>
      </header>
      <form
        class="search-bar"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          clearTimeout(timer);
          setQ(text().trim());
        }}
      >
        <label class="search-field big">
          <Icon name="search" />
          <input
            type="search"
            placeholder="Search models, e.g. qwen, llama, smollm"
            aria-label="Search Hugging Face models"
            value={text()}
            onInput={(e) => {
              const v = e.currentTarget.value;
              setText(v);
              clearTimeout(timer);
              timer = setTimeout(() => setQ(v.trim()), 350);
            }}
          />
        </label>
        <div class="filters">
          <label class="check">
            <input type="checkbox" checked={mlxOnly()} onChange={(e) => setMlxOnly(e.currentTarget.checked)} />
            MLX only
          </label>
          <label class="select-label">
            <span class="visually-hidden">Parameters</span>
            <select aria-label="Parameter count" value={size()} onChange={(e) => setSize(Number(e.currentTarget.value))}>
              <For each={SIZES}>{(s, i) => (
                <option value={i()} selected={i() === size()}>
                  {s.label}
                </option>
              )}</For>
            </select>
          </label>
          <label class="select-label">
            <span class="visually-hidden">Sort</span>
            <select aria-label="Sort by" value={sort()} onChange={(e) => setSort(e.currentTarget.value as HubSort)}>
              <option value="downloads">Most downloaded</option>
              <option value="likes">Most liked</option>
              <option value="trending">Trending</option>
              <option value="updated">Recently updated</option>
            </select>
          </label>
        </div>
      </form>
      <Switch>
        <Match when={results.error()}>
          <ErrorNotice error={AppError.from(results.error())} onRetry={results.refetch} />
        </Match>
        <Match when={results.loading() && !results.data()}>
          <ul class="result-grid" aria-hidden="true">
            <For each={[1, 2, 3, 4, 5, 6]}>{() => <li class="card skeleton-card" />}</For>
          </ul>
        </Match>
        <Match when={results.data() && results.data()!.results.length === 0}>
          <EmptyState icon="search" title="No models found" text="Try another name, or turn off “MLX only” to see every format." />
        </Match>
        <Match when={results.data()}>
          <ul class="result-grid" aria-busy={results.loading()} classList={{ stale: results.loading() }}>
            <For each={results.data()!.results}>
              {(r) => (
                <li>
                  <a class="card result" href={modelPageHref(r.id)}>
                    <div class="result-top">
                      <span class="result-author">{r.author}</span>
                      <Show when={r.mlx}>
                        <Badge tone="accent">MLX</Badge>
                      </Show>
                    </div>
                    <span class="result-name">{r.id.split('/').slice(1).join('/') || r.id}</span>
                    <div class="result-meta">
                      <span title="Parameters">
                        <Icon name="cpu" size={14} /> {formatParams(r.parameters)}
                      </span>
                      <span title="Downloads">
                        <Icon name="download" size={14} /> {formatCount(r.downloads)}
                      </span>
                      <span title="Likes">
                        <Icon name="heart" size={14} /> {formatCount(r.likes)}
                      </span>
                      <span class="result-updated">{formatRelative(r.last_modified)}</span>
                    </div>
                  </a>
                </li>
              )}
            </For>
          </ul>
        </Match>
      </Switch>
    </div>
  );
}

const CONTEXTS = [2048, 4096, 8192, 16384, 32768, 65536, 131072];

const VERDICT: Record<Verdict, { label: string; tone: 'good' | 'warn' | 'bad'; text: string }> = {
  fits: { label: 'Fits', tone: 'good', text: 'Runs comfortably in this machine’s memory.' },
  tight: { label: 'Tight', tone: 'warn', text: 'Fits, but leaves little memory for other apps.' },
  too_big: { label: 'Too big', tone: 'bad', text: 'Needs more memory than this machine has. Pick a smaller variant or context.' },
};

function ModelPage(props: { id: string }): JSX.Element {
  const [context, setContext] = createSignal(4096);
  const model = createQuery(
    () => ({ id: props.id, context: context() }),
    (qq) => api().getHubModel(qq),
  );
  const [variant, setVariant] = createSignal(0);
  const [starting, setStarting] = createSignal(false);
  const [startError, setStartError] = createSignal<AppError | null>(null);
  createEffect(on(() => props.id, () => setVariant(0)));

  const current = () => model.data();
  const variants = () => current()?.variants ?? [];
  const chosen = (): HubVariant | undefined => variants()[variant()];
  const dl = () => downloads.byRepo(props.id);
  const hubBase = () => (system()?.hf_endpoint ?? 'https://huggingface.co').replace(/\/$/, '');
  const cardBase = (m: HubModel) => `${hubBase()}/${m.id}/resolve/${m.revision || 'main'}/`;

  const start = async () => {
    const m = current();
    if (!m) return;
    setStarting(true);
    setStartError(null);
    try {
      const v = chosen();
      const d = await api().startDownload({
        repo: m.id,
        revision: m.revision,
        ...(v && variants().length > 1 ? { include: v.include } : {}),
      });
      upsertDownload(d);
    } catch (e) {
      setStartError(AppError.from(e));
    } finally {
      setStarting(false);
    }
  };

  return (
    <div class="page model-page">
      <nav class="crumbs" aria-label="Breadcrumb">
        <a href="#/discover">
          <Icon name="left" size={14} /> Discover
        </a>
      </nav>
      <Switch>
        <Match when={model.error() && !current()}>
          <ErrorNotice error={AppError.from(model.error())} context={{ repo: props.id }} onRetry={model.refetch} />
        </Match>
        <Match when={!current()}>
          <div class="center-fill">
            <Spinner label="Loading model" size={22} />
          </div>
        </Match>
        <Match when={current()}>
          {(m) => (
            <>
              <header class="page-head model-head">
                <div>
                  <p class="muted result-author">{m().id.split('/')[0]}</p>
                  <h1 class="break">{m().id.split('/').slice(1).join('/')}</h1>
                  <div class="tags">
                    <Show when={m().parameters}>
                      <Badge>{formatParams(m().parameters)} params</Badge>
                    </Show>
                    <Show when={m().architecture}>
                      <Badge>{m().architecture}</Badge>
                    </Show>
                    <Show when={m().license}>
                      <Badge>{m().license}</Badge>
                    </Show>
                    <Show when={m().gated}>
                      <Badge tone="warn">
                        <Icon name="lock" size={12} /> Gated
                      </Badge>
                    </Show>
                    <Show when={!m().supported}>
                      <Badge tone="bad" title="CortexStream cannot run this architecture yet">
                        Not supported
                      </Badge>
                    </Show>
                  </div>
                </div>
                <a class="btn btn-ghost" href={`${hubBase()}/${m().id}`} target="_blank" rel="noopener noreferrer">
                  Hugging Face <Icon name="external" size={14} />
                </a>
              </header>

              <div class="model-layout">
                <div class="model-main">
                  <Show when={m().gated}>
                    <div class="notice" data-tone="warn">
                      <Icon name="lock" class="notice-icon" />
                      <div class="notice-body">
                        <strong>This model is gated</strong>
                        <p>
                          Accept its license on Hugging Face with your account, and add a Hugging Face token in Settings, before
                          downloading.
                        </p>
                        <div class="notice-actions">
                          <a class="btn btn-small" href={`${hubBase()}/${m().id}`} target="_blank" rel="noopener noreferrer">
                            Accept the license <Icon name="external" size={13} />
                          </a>
                          <a class="btn btn-small btn-ghost" href="#/settings">
                            Add a token
                          </a>
                        </div>
                      </div>
                    </div>
                  </Show>
                  <section class="card card-pad model-card" aria-label="Model card">
                    <Show when={cardBody(m().card).trim()} fallback={<p class="muted">This repository has no model card.</p>}>
                      <Markdown source={cardBody(m().card)} baseUrl={cardBase(m())} class="card-md" />
                    </Show>
                  </section>
                </div>

                <aside class="model-side">
                  <section class="card card-pad" aria-labelledby="dl-title">
                    <h2 id="dl-title" class="section-title">
                      Download
                    </h2>
                    <Show when={variants().length > 1}>
                      <fieldset class="variants">
                        <legend class="field-label">Variant</legend>
                        <For each={variants()}>
                          {(v, i) => (
                            <label class="variant" classList={{ selected: variant() === i() }}>
                              <input type="radio" name="variant" checked={variant() === i()} onChange={() => setVariant(i())} />
                              <span class="variant-name">{v.name}</span>
                              <span class="variant-meta">
                                {v.quantization ? `${v.quantization} · ` : ''}
                                {formatBytes(v.size)}
                              </span>
                            </label>
                          )}
                        </For>
                      </fieldset>
                    </Show>
                    <label class="field">
                      <span class="field-label">Context length</span>
                      <select value={context()} onChange={(e) => setContext(Number(e.currentTarget.value))}>
                        <For each={CONTEXTS}>{(c) => (
                            <option value={c} selected={c === context()}>
                              {c >= 1024 ? `${c / 1024}K` : c} tokens
                            </option>
                          )}</For>
                      </select>
                    </label>
                    <div class="memory" aria-busy={model.loading()}>
                      <div class="memory-row">
                        <span>Memory needed</span>
                        <span>
                          <strong>{formatBytes(m().memory.total_bytes)}</strong>
                          <span class="muted"> of {formatBytes(m().memory.machine_bytes)}</span>
                        </span>
                      </div>
                      <div class="muted small">
                        Weights {formatBytes(m().memory.weights_bytes)} + KV cache {formatBytes(m().memory.kv_bytes)} at{' '}
                        {m().memory.context.toLocaleString('en-US')} tokens
                      </div>
                      <div class="verdict" data-tone={VERDICT[m().memory.verdict].tone}>
                        <Badge tone={VERDICT[m().memory.verdict].tone}>{VERDICT[m().memory.verdict].label}</Badge>
                        <span>{VERDICT[m().memory.verdict].text}</span>
                      </div>
                    </div>
                    <Show
                      when={dl() && (isActive(dl()!) || dl()!.state === 'completed')}
                      fallback={
                        libraryOnly() ? (
                          <p class="notice compact" data-tone="warn" role="status">
                            This server serves its library only: downloads are made on the machine that runs it.
                          </p>
                        ) : (
                        <button
                          type="button"
                          class="btn btn-primary btn-block"
                          disabled={starting() || !m().supported}
                          onClick={() => void start()}
                        >
                          <Icon name="download" size={16} />
                          {starting() ? 'Starting…' : `Download ${formatBytes(chosen()?.size ?? m().total_size)}`}
                        </button>
                        )
                      }
                    >
                      <div class="inline-progress">
                        <div class="memory-row">
                          <span>{STATE_LABELS[dl()!.state]}</span>
                          <span>{formatPercent(downloadFraction(dl()!))}</span>
                        </div>
                        <ProgressBar value={downloadFraction(dl()!)} label={`Download of ${m().id}`} state={dl()!.state} />
                        <Show
                          when={dl()!.state === 'completed' && dl()!.model_id}
                          fallback={
                            <a class="btn btn-ghost btn-block" href="#/downloads">
                              Show in Downloads
                            </a>
                          }
                        >
                          <button type="button" class="btn btn-primary btn-block" onClick={() => navigate('#/library')}>
                            Open in Library
                          </button>
                        </Show>
                      </div>
                    </Show>
                    <Show when={startError()}>
                      <ErrorNotice error={startError()!} context={{ repo: m().id }} onRetry={() => void start()} compact />
                    </Show>
                  </section>

                  <section class="card card-pad" aria-labelledby="files-title">
                    <h2 id="files-title" class="section-title">
                      Files <span class="muted small">{formatBytes(m().total_size)}</span>
                    </h2>
                    <ul class="file-list">
                      <For each={m().files}>
                        {(f) => (
                          <li>
                            <span class="file-path" title={f.path}>
                              {f.path}
                            </span>
                            <span class="file-size">{formatBytes(f.size)}</span>
                          </li>
                        )}
                      </For>
                    </ul>
                  </section>
                </aside>
              </div>
            </>
          )}
        </Match>
      </Switch>
    </div>
  );
}
