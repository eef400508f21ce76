// Print the explorer's axis ticks (format.mjs axisTicks) for each [lo, hi, count] of a JSON list
// given as the one argument, as JSON. Used by tests/test_explorer_parity.py:
//   node tests/js/axis_ticks.mjs '[[-56.587, -25.05, 3], [0, 1, 4]]'
import { axisTicks } from "../../book/_extra/explorer/format.mjs";

const ranges = JSON.parse(process.argv[2]);
process.stdout.write(JSON.stringify(ranges.map(([lo, hi, count]) => axisTicks(lo, hi, count))));
