// Small shared pieces: buttons, dialogs, notices, progress, empty states.
import { createEffect, createUniqueId, For, onCleanup, Show, type JSX, type ParentProps } from 'solid-js';
import { describeError, type ErrorContext } from '../lib/errors-ui';
import type { ErrorBody } from '../services/types';
import { Icon, type IconName } from './Icon';
import { dismiss, toasts } from '../stores/toasts';

export function IconButton(props: {
  icon: IconName;
  label: string;
  onClick?: (e: MouseEvent) => void;
  disabled?: boolean;
  class?: string;
  pressed?: boolean;
  size?: number;
}): JSX.Element {
  return (
    <button
      type="button"
      class={`icon-btn ${props.class ?? ''}`}
      aria-label={props.label}
      title={props.label}
      aria-pressed={props.pressed === undefined ? undefined : props.pressed}
      disabled={props.disabled}
      onClick={(e) => props.onClick?.(e)}
    >
      <Icon name={props.icon} size={props.size ?? 18} />
    </button>
  );
}

export function Spinner(props: { label?: string; size?: number }): JSX.Element {
  return (
    <span class="spinner" role="status" aria-label={props.label ?? 'Loading'} style={{ '--size': `${props.size ?? 16}px` }} />
  );
}

export function ProgressBar(props: { value: number; label: string; state?: string }): JSX.Element {
  const pct = () => Math.round(Math.max(0, Math.min(1, props.value)) * 1000) / 10;
  return (
    <div
      class="progress"
      data-state={props.state}
      role="progressbar"
      aria-label={props.label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={pct()}
    >
      <div class="progress-fill" style={{ transform: `scaleX(${pct() / 100})` }} />
    </div>
  );
}

export function Badge(props: ParentProps<{ tone?: 'neutral' | 'accent' | 'good' | 'warn' | 'bad'; title?: string }>): JSX.Element {
  return (
    <span class="badge" data-tone={props.tone ?? 'neutral'} title={props.title}>
      {props.children}
    </span>
  );
}

export function EmptyState(props: ParentProps<{ icon: IconName; title: string; text?: string }>): JSX.Element {
  return (
    <div class="empty">
      <div class="empty-icon">
        <Icon name={props.icon} size={28} />
      </div>
      <h2>{props.title}</h2>
      <Show when={props.text}>
        <p>{props.text}</p>
      </Show>
      {props.children}
    </div>
  );
}

/** An error with what to do about it: links to where it can be fixed, and a retry. */
export function ErrorNotice(props: {
  error: ErrorBody;
  context?: ErrorContext;
  onRetry?: () => void;
  compact?: boolean;
}): JSX.Element {
  const view = () => describeError(props.error, { ...props.context, retryable: props.context?.retryable ?? !!props.onRetry });
  return (
    <div class="notice" data-tone="bad" role="alert" classList={{ compact: !!props.compact }}>
      <Icon name="alert" class="notice-icon" />
      <div class="notice-body">
        <strong>{view().title}</strong>
        <p>{view().message}</p>
        <Show when={view().actions.length > 0}>
          <div class="notice-actions">
            <For each={view().actions}>
              {(action) =>
                action.kind === 'retry' ? (
                  <button type="button" class="btn btn-small" onClick={() => props.onRetry?.()}>
                    <Icon name="refresh" size={15} /> {action.label}
                  </button>
                ) : (
                  <a
                    class="btn btn-small"
                    href={action.href}
                    {...(action.kind === 'external' ? { target: '_blank', rel: 'noopener noreferrer' } : {})}
                  >
                    {action.label}
                  </a>
                )
              }
            </For>
          </div>
        </Show>
      </div>
    </div>
  );
}

/** A modal dialog on <dialog>: focus is trapped by the browser, Esc closes. */
export function Dialog(
  props: ParentProps<{ open: boolean; title: string; onClose: () => void; footer?: JSX.Element; wide?: boolean }>,
): JSX.Element {
  let ref: HTMLDialogElement | undefined;
  const titleId = createUniqueId();
  createEffect(() => {
    if (!ref) return;
    if (props.open && !ref.open) ref.showModal();
    if (!props.open && ref.open) ref.close();
  });
  onCleanup(() => ref?.open && ref.close());
  return (
    <dialog
      ref={ref}
      class="dialog"
      classList={{ wide: !!props.wide }}
      aria-labelledby={titleId}
      onCancel={(e) => {
        e.preventDefault();
        props.onClose();
      }}
      onClick={(e) => {
        if (e.target === ref) props.onClose();
      }}
    >
      <Show when={props.open}>
        <div class="dialog-inner">
          <header class="dialog-head">
            <h2 id={titleId}>{props.title}</h2>
            <IconButton icon="close" label="Close" onClick={() => props.onClose()} />
          </header>
          <div class="dialog-body">{props.children}</div>
          <Show when={props.footer}>
            <footer class="dialog-foot">{props.footer}</footer>
          </Show>
        </div>
      </Show>
    </dialog>
  );
}

export function ConfirmDialog(props: {
  open: boolean;
  title: string;
  message: JSX.Element;
  confirmLabel: string;
  danger?: boolean;
  busy?: boolean;
  onConfirm: () => void;
  onClose: () => void;
}): JSX.Element {
  return (
    <Dialog
      open={props.open}
      title={props.title}
      onClose={props.onClose}
      footer={
        <>
          <button type="button" class="btn btn-ghost" onClick={() => props.onClose()}>
            Cancel
          </button>
          <button
            type="button"
            class="btn"
            classList={{ 'btn-danger': !!props.danger, 'btn-primary': !props.danger }}
            disabled={props.busy}
            onClick={() => props.onConfirm()}
          >
            {props.confirmLabel}
          </button>
        </>
      }
    >
      <p class="dialog-text">{props.message}</p>
    </Dialog>
  );
}

export function Toasts(): JSX.Element {
  return (
    <div class="toasts" role="status" aria-live="polite">
      <For each={toasts()}>
        {(t) => (
          <div class="toast" data-kind={t.kind}>
            <Icon name={t.kind === 'error' ? 'alert' : 'check'} size={16} />
            <span>{t.text}</span>
            <Show when={t.action}>
              {(a) => (
                <a class="toast-action" href={a().href} onClick={() => dismiss(t.id)}>
                  {a().label}
                </a>
              )}
            </Show>
            <IconButton icon="close" label="Dismiss" size={14} onClick={() => dismiss(t.id)} />
          </div>
        )}
      </For>
    </div>
  );
}
