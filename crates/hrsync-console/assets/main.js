// Entry point, loaded by index.html as a module (no inline script: the
// Content-Security-Policy allows only scripts from this origin).

import { start } from './app.js';

start();
