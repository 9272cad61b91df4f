// Runs a wasm32-wasip1 program inside V8 with node's WASI: `node bench/wasi-run.mjs PROGRAM.wasm
// [ARGS...]`. Imports other than WASI (the filter's proxy-wasm calls, linked in but never
// reached by the microbenchmark) get stubs that throw, so a stray host call is loud.
import { readFile } from "node:fs/promises";
import { argv, exit } from "node:process";
import { WASI } from "node:wasi";

// `proc_exit` ends node where it is called (`returnOnExit: false`): unwinding back out of the
// module to return its code, node 20 crashed (signal 11) after the last line in 1 to 2 runs
// of 4 (2026-12-07); together with the microbenchmark's own exit, 0 of 6.
const wasi = new WASI({ version: "preview1", args: [argv[2], ...argv.slice(3)], env: {}, returnOnExit: false });
const module = await WebAssembly.compile(await readFile(argv[2]));
const imports = { wasi_snapshot_preview1: wasi.wasiImport };
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module === "wasi_snapshot_preview1") continue;
  imports[imp.module] ??= {};
  imports[imp.module][imp.name] = () => {
    throw new Error(`unexpected host call ${imp.module}.${imp.name}`);
  };
}
const instance = await WebAssembly.instantiate(module, imports);
// The library's proxy-wasm entry point (`_initialize`) is linked in too; node refuses a command
// that also exports one, so only what a command needs is handed over.
const { memory, _start } = instance.exports;
exit(wasi.start({ exports: { memory, _start } }));
