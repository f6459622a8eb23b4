import { createSignal, lazy, Match, onMount, Show, Suspense, Switch, For, type JSX } from 'solid-js';
import { ApiKeyDialog } from './components/ApiKeyDialog';
import { Icon, type IconName } from './components/Icon';
import { IconButton, Spinner, Toasts } from './components/ui';
import { formatPercent } from './lib/format';
import { route } from './lib/router';
import { platform } from './services';
import { ChatScreen } from './screens/chat/ChatScreen';
import { downloads } from './stores/downloads';
import { connection } from './stores/events';

// The chat is the first screen and ships in the main bundle; the others load on first visit.
const DiscoverScreen = lazy(() => import('./screens/Discover'));
const DownloadsScreen = lazy(() => import('./screens/Downloads'));
const LibraryScreen = lazy(() => import('./screens/Library'));
const SettingsScreen = lazy(() => import('./screens/Settings'));

const NAV: { screen: string; href: string; label: string; icon: IconName }[] = [
  { screen: 'chat', href: '#/chat', label: 'Chat', icon: 'chat' },
  { screen: 'discover', href: '#/discover', label: 'Discover', icon: 'discover' },
  { screen: 'downloads', href: '#/downloads', label: 'Downloads', icon: 'download' },
  { screen: 'library', href: '#/library', label: 'Library', icon: 'library' },
  { screen: 'settings', href: '#/settings', label: 'Settings', icon: 'settings' },
];

export function App(): JSX.Element {
  const [navOpen, setNavOpen] = createSignal(false);
  onMount(() => {
    // Preload the other screens once the chat is up, so the first switch is instant.
    const idle = (window as { requestIdleCallback?: (cb: () => void) => void }).requestIdleCallback ?? ((cb) => setTimeout(cb, 1200));
    idle(() => {
      void import('./screens/Discover');
      void import('./screens/Downloads');
      void import('./screens/Library');
      void import('./screens/Settings');
    });
  });
  return (
    <div class="app" classList={{ 'nav-open': navOpen() }}>
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <IconButton icon="menu" label="Open navigation" onClick={() => setNavOpen(true)} />
        <span class="brand-name">CortexStream</span>
      </header>
      <nav class="sidebar" aria-label="Main">
        <div class="brand">
          <span class="brand-mark" aria-hidden="true" />
          <span class="brand-name">CortexStream</span>
          <IconButton icon="close" class="nav-close" label="Close navigation" onClick={() => setNavOpen(false)} />
        </div>
        <ul>
          <For each={NAV}>
            {(item) => (
              <li>
                <a
                  href={item.href}
                  class="nav-link"
                  aria-current={route().screen === item.screen ? 'page' : undefined}
                  onClick={() => setNavOpen(false)}
                >
                  <Icon name={item.icon} />
                  <span>{item.label}</span>
                  <Show when={item.screen === 'downloads' && downloads.total().count > 0}>
                    <span class="nav-count" aria-hidden="true" title={`${downloads.total().count} active`}>
                      {formatPercent(downloads.total().fraction)}
                    </span>
                  </Show>
                </a>
              </li>
            )}
          </For>
        </ul>
        <div class="sidebar-foot">
          <span class="conn" data-state={connection()}>
            <span class="conn-dot" aria-hidden="true" />
            {connection() === 'open' ? 'Connected' : connection() === 'connecting' ? 'Connecting…' : 'Reconnecting…'}
          </span>
        </div>
      </nav>
      <div class="scrim" onClick={() => setNavOpen(false)} aria-hidden="true" />
      <main id="main" class="main" tabindex="-1">
        <Suspense
          fallback={
            <div class="screen-loading">
              <Spinner label="Loading screen" />
            </div>
          }
        >
          <Switch>
            <Match when={route().screen === 'chat'}>
              <ChatScreen />
            </Match>
            <Match when={route().screen === 'discover'}>
              <DiscoverScreen />
            </Match>
            <Match when={route().screen === 'downloads'}>
              <DownloadsScreen />
            </Match>
            <Match when={route().screen === 'library'}>
              <LibraryScreen />
            </Match>
            <Match when={route().screen === 'settings'}>
              <SettingsScreen />
            </Match>
          </Switch>
        </Suspense>
      </main>
      <Toasts />
      <Show when={platform.name === 'web'}>
        <ApiKeyDialog />
      </Show>
    </div>
  );
}
