import { createSignal, For, Show, type JSX } from 'solid-js';
import { Icon, type IconName } from '../components/Icon';
import { Badge, EmptyState, ErrorNotice, ProgressBar, Spinner } from '../components/ui';
import { actionsFor, downloadBytes, downloadFraction, STATE_LABELS } from '../lib/downloads';
import { modelPageHref } from '../lib/errors-ui';
import { formatBytes, formatPercent, formatSpeedAndEta } from '../lib/format';
import { api } from '../services';
import { AppError } from '../services/errors';
import type { DownloadState, Id } from '../services/types';
import { downloads, removeDownload, upsertDownload } from '../stores/downloads';
import { toast } from '../stores/toasts';
import { chat } from './chat/controller';

const TONE: Record<DownloadState, 'neutral' | 'accent' | 'good' | 'warn' | 'bad'> = {
  queued: 'neutral',
  running: 'accent',
  paused: 'neutral',
  retrying: 'warn',
  verifying: 'accent',
  completed: 'good',
  failed: 'bad',
  cancelled: 'neutral',
};

const ACTION: Record<string, { label: string; icon: IconName }> = {
  pause: { label: 'Pause', icon: 'pause' },
  resume: { label: 'Resume', icon: 'play' },
  cancel: { label: 'Cancel', icon: 'close' },
  retry: { label: 'Retry', icon: 'refresh' },
  forget: { label: 'Remove from list', icon: 'trash' },
};

export default function DownloadsScreen(): JSX.Element {
  const total = downloads.total;
  return (
    <div class="page">
      <header class="page-head">
        <div>
          <h1>Downloads</h1>
          <p class="muted">Models being fetched from Hugging Face. Unfinished downloads resume after a restart.</p>
        </div>
      </header>
      <Show when={total().count > 0}>
        <section class="card card-pad total" aria-label="All downloads">
          <div class="total-row">
            <strong>
              {total().count} active · {formatPercent(total().fraction)}
            </strong>
            <span class="muted">
              {formatBytes(total().done)} of {formatBytes(total().total)} · {formatSpeedAndEta(total().speed, total().eta)}
            </span>
          </div>
          <ProgressBar value={total().fraction} label="Total download progress" />
        </section>
      </Show>
      <Show
        when={downloads.loaded() || downloads.ids().length > 0}
        fallback={
          <div class="center-fill">
            <Spinner label="Loading downloads" size={22} />
          </div>
        }
      >
        <Show
          when={downloads.ids().length > 0}
          fallback={
            <EmptyState icon="download" title="No downloads" text="Find a model in Discover and download it; its progress shows up here.">
              <a class="btn btn-primary" href="#/discover">
                Browse models
              </a>
            </EmptyState>
          }
        >
          <ul class="dl-list">
            <For each={downloads.ids()}>{(id) => <DownloadRow id={id} />}</For>
          </ul>
        </Show>
      </Show>
    </div>
  );
}

function DownloadRow(props: { id: Id }): JSX.Element {
  const d = () => downloads.get(props.id);
  const [open, setOpen] = createSignal(false);
  const [busy, setBusy] = createSignal(false);

  const act = async (action: string) => {
    const current = d();
    if (!current) return;
    setBusy(true);
    try {
      const s = api();
      switch (action) {
        case 'pause':
          upsertDownload(await s.pauseDownload(current.id));
          break;
        case 'resume':
          upsertDownload(await s.resumeDownload(current.id));
          break;
        case 'cancel':
          upsertDownload(await s.cancelDownload(current.id));
          break;
        case 'retry':
          upsertDownload(await s.retryDownload(current.id));
          break;
        case 'forget':
          await s.forgetDownload(current.id);
          removeDownload(current.id);
          break;
      }
    } catch (e) {
      toast(AppError.from(e).message, 'error');
    } finally {
      setBusy(false);
    }
  };

  return (
    <Show when={d()}>
      {(dl) => (
        <li class="card dl" data-state={dl().state}>
          <div class="dl-head">
            <div class="dl-title">
              <a class="dl-repo" href={modelPageHref(dl().repo)}>
                {dl().repo}
              </a>
              <Badge tone={TONE[dl().state]}>{STATE_LABELS[dl().state]}</Badge>
              <Show when={dl().include && dl().include!.length > 0}>
                <span class="muted small">{dl().include!.join(', ')}</span>
              </Show>
            </div>
            <div class="dl-actions">
              <Show when={dl().state === 'completed' && dl().model_id}>
                <button type="button" class="btn btn-small btn-primary" onClick={() => startChat(dl().model_id!)}>
                  Chat with it
                </button>
              </Show>
              <For each={actionsFor(dl().state)}>
                {(a) => (
                  <button
                    type="button"
                    class="btn btn-small btn-ghost"
                    disabled={busy()}
                    aria-label={`${ACTION[a]!.label} ${dl().repo}`}
                    onClick={() => void act(a)}
                  >
                    <Icon name={ACTION[a]!.icon} size={14} /> {ACTION[a]!.label}
                  </button>
                )}
              </For>
            </div>
          </div>
          <Show when={dl().state !== 'completed'}>
            <ProgressBar value={downloadFraction(dl())} label={`Download of ${dl().repo}`} state={dl().state} />
          </Show>
          <div class="dl-meta">
            <span>
              {formatBytes(downloadBytes(dl()).done)} of {formatBytes(downloadBytes(dl()).total)}
              <Show when={dl().state !== 'completed'}> · {formatPercent(downloadFraction(dl()))}</Show>
            </span>
            <Show when={dl().state === 'running' || dl().state === 'retrying'}>
              <span>
                {formatSpeedAndEta(dl().speed_bps, dl().eta_s)}
              </span>
            </Show>
            <Show when={dl().files.length > 0}>
              <button type="button" class="link-btn" aria-expanded={open()} onClick={() => setOpen(!open())}>
                {open() ? 'Hide files' : `${dl().files.length} files`}
              </button>
            </Show>
          </div>
          <Show when={dl().error && (dl().state === 'failed' || dl().state === 'retrying')}>
            <ErrorNotice
              error={dl().error!}
              context={{ repo: dl().repo, retryable: false }}
              compact
            />
          </Show>
          <Show when={open()}>
            <ul class="dl-files">
              <For each={dl().files}>
                {(f) => (
                  <li>
                    <span class="file-path" title={f.path}>
                      {f.path}
                    </span>
                    <span class="file-progress">
                      <ProgressBar value={f.size > 0 ? f.done / f.size : 1} label={f.path} />
                    </span>
                    <span class="file-size">
                      {formatBytes(f.done)} / {formatBytes(f.size)}
                    </span>
                  </li>
                )}
              </For>
            </ul>
          </Show>
        </li>
      )}
    </Show>
  );
}

export function startChat(modelId: Id): void {
  chat().chatWithModel(modelId);
}
