import { createEffect, createSignal, For, on, Show, type JSX } from 'solid-js';
import { Icon } from '../components/Icon';
import { Badge, ConfirmDialog, Dialog, EmptyState, ErrorNotice, ProgressBar, Spinner } from '../components/ui';
import { formatBytes, formatParams, formatPercent, formatQuantization, formatRelative } from '../lib/format';
import { api } from '../services';
import { AppError } from '../services/errors';
import type { Conversion, ConvertOptions, Dtype, Id, LocalModel } from '../services/types';
import { conversions, upsertConversion } from '../stores/downloads';
import { dropModel, libraryOnly, models, putModel, refreshModels } from '../stores/models';
import { toast } from '../stores/toasts';
import { startChat } from './Downloads';

export default function LibraryScreen(): JSX.Element {
  const [deleting, setDeleting] = createSignal<LocalModel | null>(null);
  const [deleteBusy, setDeleteBusy] = createSignal(false);
  const [converting, setConverting] = createSignal<LocalModel | null>(null);
  const [importOpen, setImportOpen] = createSignal(false);
  void refreshModels();

  const remove = async () => {
    const m = deleting();
    if (!m) return;
    setDeleteBusy(true);
    try {
      const { freed_bytes } = await api().deleteModel(m.id);
      dropModel(m.id);
      toast(`Deleted ${m.name}. Freed ${formatBytes(freed_bytes)}.`, 'success');
      setDeleting(null);
      void refreshModels();
    } catch (e) {
      toast(AppError.from(e).message, 'error');
    } finally {
      setDeleteBusy(false);
    }
  };

  const running = () => conversions.all().filter((c) => c.state === 'running');

  return (
    <div class="page">
      <header class="page-head">
        <div>
          <h1>Library</h1>
          <p class="muted">
            <Show when={models.loaded()} fallback="Models on this machine.">
              {models.ids().length} {models.ids().length === 1 ? 'model' : 'models'} · {formatBytes(models.totalSize())} on disk
            </Show>
          </p>
          <Show when={libraryOnly()}>
            <p class="muted small library-only-hint">
              <Icon name="lock" size={13} /> This server serves its library only: models are added on the machine that runs it.
            </p>
          </Show>
        </div>
        <Show when={!libraryOnly()}>
          <button type="button" class="btn" onClick={() => setImportOpen(true)}>
            <Icon name="folder" size={16} /> Import
          </button>
        </Show>
      </header>

      <Show when={running().length > 0}>
        <ul class="dl-list">
          <For each={running()}>{(c) => <ConversionRow conversion={c} />}</For>
        </ul>
      </Show>

      <Show
        when={models.loaded()}
        fallback={
          <Show
            when={models.error()}
            fallback={
              <div class="center-fill">
                <Spinner label="Loading models" size={22} />
              </div>
            }
          >
            <ErrorNotice error={AppError.from(models.error())} onRetry={() => void refreshModels()} />
          </Show>
        }
      >
        <Show
          when={models.ids().length > 0}
          fallback={
            <EmptyState
              icon="library"
              title="No models yet"
              text={
                libraryOnly()
                  ? 'This server serves its library only, and its library is empty. Models are added on the machine that runs it.'
                  : 'Download one from Discover, or import a .gguf file or a model folder.'
              }
            >
              <Show when={!libraryOnly()}>
                <div class="row-gap">
                  <a class="btn btn-primary" href="#/discover">
                    Browse models
                  </a>
                  <button type="button" class="btn" onClick={() => setImportOpen(true)}>
                    Import
                  </button>
                </div>
              </Show>
            </EmptyState>
          }
        >
          <ul class="model-list">
            <For each={models.ids()}>
              {(id) => <ModelRow id={id} onDelete={setDeleting} onConvert={setConverting} />}
            </For>
          </ul>
        </Show>
      </Show>

      <ConfirmDialog
        open={deleting() !== null}
        title="Delete this model?"
        message={
          <>
            <strong>{deleting()?.name}</strong> ({formatBytes(deleting()?.size_bytes)}) will be removed from disk. Files shared with
            other models stay.
          </>
        }
        confirmLabel="Delete"
        danger
        busy={deleteBusy()}
        onClose={() => setDeleting(null)}
        onConfirm={() => void remove()}
      />
      <Show when={converting()}>{(m) => <ConvertDialog model={m()} onClose={() => setConverting(null)} />}</Show>
      <ImportDialog open={importOpen()} onClose={() => setImportOpen(false)} />
    </div>
  );
}

function sourceLabel(m: LocalModel): string {
  switch (m.source.kind) {
    case 'hub':
      return m.source.repo;
    case 'gguf':
      return 'Imported GGUF';
    case 'folder':
      return 'Imported folder';
    case 'converted':
      return 'Converted';
    case 'default':
      return 'Built in';
  }
}

function ModelRow(props: { id: Id; onDelete: (m: LocalModel) => void; onConvert: (m: LocalModel) => void }): JSX.Element {
  const m = () => models.get(props.id);
  const [busy, setBusy] = createSignal(false);
  const toggleLoad = async () => {
    const model = m();
    if (!model) return;
    setBusy(true);
    try {
      putModel(model.loaded ? await api().unloadModel(model.id) : await api().loadModel(model.id));
    } catch (e) {
      toast(AppError.from(e).message, 'error');
    } finally {
      setBusy(false);
    }
  };
  return (
    <Show when={m()}>
      {(model) => (
        <li class="card model-row">
          <div class="model-info">
            <div class="model-name-row">
              <span class="model-name">{model().name}</span>
              <Show when={model().loaded}>
                <Badge tone="good">Loaded</Badge>
              </Show>
            </div>
            <div class="model-meta">
              <span>{formatBytes(model().size_bytes)}</span>
              <span>{model().format.toUpperCase()}</span>
              <span>{formatQuantization(model().quantization, model().dtype)}</span>
              <Show when={model().architecture}>
                <span>{model().architecture}</span>
              </Show>
              <Show when={model().parameters}>
                <span>{formatParams(model().parameters)} params</span>
              </Show>
            </div>
            <div class="model-meta muted">
              <span>{sourceLabel(model())}</span>
              <span>{model().last_used_at ? `used ${formatRelative(model().last_used_at)}` : 'never used'}</span>
            </div>
          </div>
          <div class="model-actions">
            <button type="button" class="btn btn-small btn-primary" onClick={() => startChat(model().id)}>
              Chat
            </button>
            <button type="button" class="btn btn-small" disabled={busy()} onClick={() => void toggleLoad()}>
              {busy() ? (model().loaded ? 'Unloading…' : 'Loading…') : model().loaded ? 'Unload' : 'Load'}
            </button>
            {/* Converting reads Hugging Face safetensors; an MLX model is converted already. */}
            <Show when={model().format === 'safetensors' && !libraryOnly()}>
              <button type="button" class="btn btn-small btn-ghost" aria-label={`Convert ${model().name}`} onClick={() => props.onConvert(model())}>
                <Icon name="convert" size={14} /> Convert
              </button>
            </Show>
            <button
              type="button"
              class="btn btn-small btn-ghost danger-text"
              aria-label={`Delete ${model().name}`}
              onClick={() => props.onDelete(model())}
            >
              <Icon name="trash" size={14} /> Delete
            </button>
          </div>
        </li>
      )}
    </Show>
  );
}

function ConversionRow(props: { conversion: Conversion }): JSX.Element {
  const fraction = () =>
    props.conversion.total_bytes > 0
      ? props.conversion.done_bytes / props.conversion.total_bytes
      : props.conversion.done_tensors / Math.max(1, props.conversion.total_tensors);
  return (
    <li class="card dl">
      <div class="dl-head">
        <div class="dl-title">
          <span class="dl-repo">Converting to {props.conversion.name}</span>
          <Badge tone="accent">{formatPercent(fraction())}</Badge>
        </div>
        <button
          type="button"
          class="btn btn-small btn-ghost"
          onClick={() => void api().cancelConversion(props.conversion.id).catch((e) => toast(AppError.from(e).message, 'error'))}
        >
          Cancel
        </button>
      </div>
      <ProgressBar value={fraction()} label={`Conversion to ${props.conversion.name}`} />
    </li>
  );
}

const BITS: (ConvertOptions['bits'])[] = [null, 2, 3, 4, 5, 6, 8];

function ConvertDialog(props: { model: LocalModel; onClose: () => void }): JSX.Element {
  const [bits, setBits] = createSignal<ConvertOptions['bits']>(4);
  const [group, setGroup] = createSignal<ConvertOptions['group_size']>(64);
  const [dtype, setDtype] = createSignal<Dtype | null>(null);
  const [name, setName] = createSignal('');
  const [estimate, setEstimate] = createSignal<{ output_bytes: number; source_bytes: number } | null>(null);
  const [estimateError, setEstimateError] = createSignal<AppError | null>(null);
  const [error, setError] = createSignal<AppError | null>(null);
  const [conversionId, setConversionId] = createSignal<Id | null>(null);
  const conversion = () => (conversionId() ? conversions.get(conversionId()!) : undefined);

  let seq = 0;
  createEffect(
    on([bits, group, dtype], ([b, g, d]) => {
      const mine = ++seq;
      setEstimateError(null);
      api()
        .estimateConversion({ model_id: props.model.id, bits: b, group_size: g, dtype: d })
        .then(
          (e) => mine === seq && setEstimate(e),
          (e) => mine === seq && setEstimateError(AppError.from(e)),
        );
    }),
  );

  const start = async () => {
    setError(null);
    try {
      const c = await api().startConversion({
        model_id: props.model.id,
        bits: bits(),
        group_size: group(),
        dtype: dtype(),
        ...(name().trim() ? { name: name().trim() } : {}),
      });
      upsertConversion(c);
      setConversionId(c.id);
    } catch (e) {
      setError(AppError.from(e));
    }
  };

  const fraction = () => {
    const c = conversion();
    if (!c) return 0;
    return c.total_bytes > 0 ? c.done_bytes / c.total_bytes : c.done_tensors / Math.max(1, c.total_tensors);
  };

  return (
    <Dialog
      open
      title={`Convert ${props.model.name}`}
      onClose={props.onClose}
      footer={
        <Show
          when={conversion()}
          fallback={
            <>
              <button type="button" class="btn btn-ghost" onClick={props.onClose}>
                Cancel
              </button>
              <button type="button" class="btn btn-primary" onClick={() => void start()}>
                Convert
              </button>
            </>
          }
        >
          {(c) => (
            <Show
              when={c().state === 'completed' && c().result_model_id}
              fallback={
                <button type="button" class="btn btn-ghost" onClick={props.onClose}>
                  {c().state === 'running' ? 'Run in background' : 'Close'}
                </button>
              }
            >
              <button type="button" class="btn btn-ghost" onClick={props.onClose}>
                Close
              </button>
              <button
                type="button"
                class="btn btn-primary"
                onClick={() => {
                  props.onClose();
                  startChat(c().result_model_id!);
                }}
              >
                Chat with it
              </button>
            </Show>
          )}
        </Show>
      }
    >
      <Show
        when={conversion()}
        fallback={
          <div class="form-grid">
            <label class="field">
              <span class="field-label">Quantization</span>
              <select
                value={String(bits())}
                onChange={(e) => setBits(e.currentTarget.value === 'null' ? null : (Number(e.currentTarget.value) as ConvertOptions['bits']))}
              >
                <For each={BITS}>
                  {(b) => (
                    <option value={String(b)} selected={b === bits()}>
                      {b === null ? 'None (keep full precision)' : `${b}-bit`}
                    </option>
                  )}
                </For>
              </select>
            </label>
            <label class="field">
              <span class="field-label">Group size</span>
              <select
                value={group()}
                disabled={bits() === null}
                onChange={(e) => setGroup(Number(e.currentTarget.value) as ConvertOptions['group_size'])}
              >
                <option value={32}>32 (more accurate)</option>
                <option value={64}>64 (default)</option>
                <option value={128}>128 (smaller)</option>
              </select>
            </label>
            <label class="field">
              <span class="field-label">Data type</span>
              <select value={dtype() ?? 'auto'} onChange={(e) => setDtype(e.currentTarget.value === 'auto' ? null : (e.currentTarget.value as Dtype))}>
                <option value="auto">Automatic for this device</option>
                <option value="float16">float16</option>
                <option value="bfloat16">bfloat16</option>
                <option value="float32">float32</option>
              </select>
            </label>
            <label class="field">
              <span class="field-label">Name (optional)</span>
              <input type="text" value={name()} placeholder={`${props.model.name}-mlx`} onInput={(e) => setName(e.currentTarget.value)} />
            </label>
            <div class="estimate" role="status">
              <Show when={!estimateError()} fallback={<span class="muted">Size estimate unavailable: {estimateError()!.message}</span>}>
                <span class="muted">Estimated output</span>
                <strong>{estimate() ? formatBytes(estimate()!.output_bytes) : '…'}</strong>
                <Show when={estimate()}>
                  <span class="muted">from {formatBytes(estimate()!.source_bytes)}</span>
                </Show>
              </Show>
            </div>
            <Show when={error()}>
              <ErrorNotice error={error()!} compact />
            </Show>
          </div>
        }
      >
        {(c) => (
          <div class="convert-progress">
            <Show
              when={c().state === 'completed'}
              fallback={
                <>
                  <div class="memory-row">
                    <span>{c().state === 'running' ? 'Converting…' : c().state === 'failed' ? 'Failed' : 'Cancelled'}</span>
                    <span>
                      {c().done_tensors} / {c().total_tensors} tensors · {formatPercent(fraction())}
                    </span>
                  </div>
                  <ProgressBar value={fraction()} label="Conversion progress" />
                  <Show when={c().error}>
                    <ErrorNotice error={c().error!} compact />
                  </Show>
                </>
              }
            >
              <div class="done-line">
                <Icon name="check" size={20} />
                <span>
                  <strong>{c().name}</strong> is ready ({formatBytes(c().estimated_output_bytes)}).
                </span>
              </div>
            </Show>
          </div>
        )}
      </Show>
    </Dialog>
  );
}

function ImportDialog(props: { open: boolean; onClose: () => void }): JSX.Element {
  const [path, setPath] = createSignal('');
  const [name, setName] = createSignal('');
  const [busy, setBusy] = createSignal(false);
  const [error, setError] = createSignal<AppError | null>(null);
  const submit = async () => {
    if (!path().trim()) return;
    setBusy(true);
    setError(null);
    try {
      const m = await api().importModel({ path: path().trim(), ...(name().trim() ? { name: name().trim() } : {}) });
      putModel(m);
      toast(`Imported ${m.name}.`, 'success');
      setPath('');
      setName('');
      props.onClose();
      void refreshModels();
    } catch (e) {
      setError(AppError.from(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog
      open={props.open}
      title="Import a model"
      onClose={props.onClose}
      footer={
        <>
          <button type="button" class="btn btn-ghost" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" form="import-form" class="btn btn-primary" disabled={busy() || !path().trim()}>
            {busy() ? 'Importing…' : 'Import'}
          </button>
        </>
      }
    >
      <form
        id="import-form"
        class="form-grid"
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        <label class="field">
          <span class="field-label">Path to a .gguf file or a model folder</span>
          <input
            type="text"
            value={path()}
            placeholder="/Users/me/models/model.Q4_0.gguf"
            spellcheck={false}
            autocomplete="off"
            onInput={(e) => setPath(e.currentTarget.value)}
          />
          <span class="field-hint">A path on the machine running CortexStream. GGUF files are converted to MLX format.</span>
        </label>
        <label class="field">
          <span class="field-label">Name (optional)</span>
          <input type="text" value={name()} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <Show when={error()}>
          <ErrorNotice error={error()!} compact />
        </Show>
      </form>
    </Dialog>
  );
}
