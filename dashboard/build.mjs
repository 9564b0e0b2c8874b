// Bundles the dashboard into dist/: index.html, and assets/ with content-hashed names.
// `npm run build` (the Makefile's install step runs it); `node build.mjs --watch` while editing.
import { build, context } from "esbuild";
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.dirname(fileURLToPath(import.meta.url));
const watch = process.argv.includes("--watch");
const final = path.join(root, "dist");
// A build goes to a staging folder that replaces dist/ only once it is complete, so a running
// server never finds dist/ half written (a missing index.html answers 503).
const dist = watch ? final : path.join(root, `dist.building-${process.pid}`);

const options = {
  entryPoints: [path.join(root, "src", "main.tsx")],
  bundle: true,
  outdir: path.join(dist, "assets"),
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  format: "esm",
  target: ["chrome110", "firefox110", "safari16"],
  jsx: "automatic",
  jsxImportSource: "preact",
  minify: !watch,
  sourcemap: watch ? "inline" : false,
  metafile: true,
  legalComments: "linked",
  loader: { ".svg": "file" },
  logLevel: "warning",
};

async function writeIndex(metafile) {
  const outputs = Object.keys(metafile.outputs).map((p) => path.relative(path.join(dist), path.resolve(p)));
  const js = outputs.find((p) => p.endsWith(".js"));
  const css = outputs.find((p) => p.endsWith(".css"));
  const template = await readFile(path.join(root, "src", "index.html"), "utf8");
  const html = template
    .replace("<!--css-->", css ? `<link rel="stylesheet" href="${css}">` : "")
    .replace("<!--js-->", `<script type="module" src="${js}"></script>`);
  await writeFile(path.join(dist, "index.html"), html);
  const digest = createHash("sha256").update(html).digest("hex").slice(0, 12);
  return { js, css, digest };
}

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
if (watch) {
  const ctx = await context({
    ...options,
    plugins: [{ name: "index", setup(b) { b.onEnd(async (r) => { if (r.metafile) await writeIndex(r.metafile); }); } }],
  });
  await ctx.watch();
  console.log("watching dashboard/src …");
} else {
  const result = await build(options);
  const { js, css } = await writeIndex(result.metafile);
  const files = await readdir(path.join(dist, "assets"));
  const old = path.join(root, `dist.old-${process.pid}`);
  await rename(final, old).catch((e) => { if (e.code !== "ENOENT") throw e; });
  await rename(dist, final);
  await rm(old, { recursive: true, force: true });
  console.log(`dashboard built: dist/index.html, ${js}${css ? ", " + css : ""} (${files.length} asset files)`);
}
