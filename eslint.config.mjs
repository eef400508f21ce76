// eslint (flat config) for the JavaScript in this repository: the explorer's ES modules, which
// run in the browser, and the node scripts the parity tests use. Run by `make lint`.
import js from "@eslint/js";
import globals from "globals";

export default [
  {
    ignores: [
      ".venv/", "node_modules/", "book/_build/", "book/_extra/mathjax/", "artifacts/", "results/",
    ],
  },
  js.configs.recommended,
  {
    files: ["book/_extra/explorer/**/*.mjs"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.browser },
  },
  {
    // A classic script the book's pages load (not a module): it sizes the explorer's frames.
    files: ["book/_extra/explorer/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "script", globals: globals.browser },
  },
  {
    files: ["tests/js/**/*.mjs", "eslint.config.mjs"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.node },
  },
];
