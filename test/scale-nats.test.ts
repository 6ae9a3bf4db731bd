import { scaleTests } from './helpers/scale-suite.js';

scaleTests('nats');
