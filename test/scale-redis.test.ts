import { scaleTests } from './helpers/scale-suite.js';

scaleTests('redis');
