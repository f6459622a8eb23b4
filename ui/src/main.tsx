import { render } from 'solid-js/web';
import './styles.css';
import { App } from './App';
import { api, initService } from './services';
import { refreshConversions, refreshDownloads } from './stores/downloads';
import { startEvents } from './stores/events';
import { refreshModels, refreshSystem } from './stores/models';
import { setTheme, theme } from './lib/theme';

async function start() {
  await initService();
  setTheme(theme());
  startEvents();
  void refreshSystem().catch(() => {});
  void refreshModels();
  void refreshDownloads().catch(() => {});
  void refreshConversions().catch(() => {});
  // The saved theme wins over this browser's copy (another window may have changed it).
  void api()
    .getSettings()
    .then((s) => s.theme !== theme() && setTheme(s.theme))
    .catch(() => {});
  render(() => <App />, document.getElementById('root')!);
}

void start();
