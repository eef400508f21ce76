// Encode many generated explorer states as addresses (url.mjs) and decode them again; print, as
// JSON, how many were tried and every state that did not come back equal (with its address).
//   node tests/js/url_roundtrip.mjs <count>
import { readFileSync } from "node:fs";
import { OWN, decodeState, encodeState } from "../../book/_extra/explorer/url.mjs";

const url = new URL("../../book/_extra/explorer/data.json", import.meta.url);
const catalogue = JSON.parse(readFileSync(url, "utf8"));
const names = [...Object.keys(catalogue.datasets), OWN];
let seed = 12345;
const rand = () => {
  seed = (seed * 1664525 + 1013904223) >>> 0;
  return seed / 2 ** 32;
};
const int = (n) => Math.floor(rand() * n);
// Doubles of every kind a state holds: rounded by the explorer, or full precision, tiny, huge.
const number = () => [
  () => Number((rand() * 20 - 10).toFixed(3)),
  () => rand() * 20 - 10,
  () => (rand() - 0.5) * 1e-12,
  () => (rand() - 0.5) * 1e12,
  () => -0,
][int(5)]();
const pairs = (n) => Array.from({ length: n }, () => [number(), number()]);

const failures = [];
const count = Number(process.argv[2] ?? 200);
for (let t = 0; t < count; t++) {
  const dataset = names[int(names.length)];
  const k = 1 + int(catalogue.k_max);
  const size = dataset === OWN ? 0 : catalogue.datasets[dataset].X.length;
  const step = int(3) ? int(200) : 0;
  const state = {
    dataset, k, seed: int(catalogue.n_seeds), reg: int(2) ? 0 : [1e-6, 0.01, 3.5e-9][int(3)],
    cov: "full", means: int(2) ? pairs(k) : null,
    drop: size ? [...new Set(Array.from({ length: int(4) }, () => int(size)))].sort((a, b) => a - b) : [],
    add: pairs(int(6)), step, steps: step + (int(2) ? int(50) : 0), go: Boolean(int(2)),
  };
  const address = encodeState(state);
  const { state: back, problems } = decodeState(address, catalogue);
  // Every number bit for bit (Object.is tells -0 from 0, which JSON does not).
  const numbers = (s) => [...(s.means ?? []).flat(), ...s.add.flat()];
  const same = JSON.stringify(back) === JSON.stringify(state)
    && numbers(back).every((v, i) => Object.is(v, numbers(state)[i]));
  if (!same || problems.length) failures.push({ state, back, address, problems });
}
process.stdout.write(JSON.stringify({ count, failures }));
