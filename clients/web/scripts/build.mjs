// Builds the library (dist/) and the account page (../../account/static/).
//   node scripts/build.mjs          build everything
//   node scripts/build.mjs --check  rebuild the account page in memory and fail if
//                                   account/static differs from it (for CI)
import * as esbuild from "esbuild";
import { mkdir, readFile, readdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const staticDir = join(root, "..", "..", "account", "static");
const check = process.argv.includes("--check");

const common = { bundle: true, target: "es2020", legalComments: "none", logLevel: "warning", charset: "utf8" };

// The account page: one minified script, plus the HTML and CSS copied verbatim.
const page = await esbuild.build({
  ...common,
  entryPoints: [join(root, "src/account/app.ts")],
  format: "iife",
  minify: true,
  write: false,
  outfile: join(staticDir, "app.js"),
});
const expected = new Map([
  ["app.js", Buffer.from(page.outputFiles[0].contents)],
  ["app.css", await readFile(join(root, "src/account/app.css"))],
  ["index.html", await readFile(join(root, "src/account/index.html"))],
  ["favicon.svg", await readFile(join(root, "src/account/favicon.svg"))],
]);

if (check) {
  const problems = [];
  const present = new Set(await readdir(staticDir).catch(() => []));
  for (const [name, want] of expected) {
    const have = present.has(name) ? await readFile(join(staticDir, name)) : null;
    if (!have || !have.equals(want)) problems.push(`account/static/${name} is out of date`);
    present.delete(name);
  }
  for (const name of present) problems.push(`account/static/${name} is not produced by the build`);
  if (problems.length) {
    console.error(problems.join("\n") + "\nrun: cd clients/web && npm run build");
    process.exit(1);
  }
  console.log("account/static is up to date");
  process.exit(0);
}

await mkdir(staticDir, { recursive: true });
const { writeFile } = await import("node:fs/promises");
for (const [name, body] of expected) await writeFile(join(staticDir, name), body);

// The library: ESM for bundlers, plus an IIFE (global `Gatehouse`) used by the browser tests.
await esbuild.build({ ...common, entryPoints: [join(root, "src/index.ts")], format: "esm", outfile: join(root, "dist/gatehouse.js") });
await esbuild.build({ ...common, entryPoints: [join(root, "src/axios.ts")], format: "esm", outfile: join(root, "dist/axios.js") });
await esbuild.build({
  ...common,
  entryPoints: [join(root, "src/index.ts")],
  format: "iife",
  globalName: "Gatehouse",
  outfile: join(root, "dist/gatehouse.iife.js"),
});
console.log(`account/static/app.js ${expected.get("app.js").length} bytes`);
