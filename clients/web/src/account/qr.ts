// The QR code of an otpauth:// URI, drawn into a <canvas> (no markup from strings, nothing
// fetched: the page's CSP stays strict). Encoding by qrcode-generator, bundled by esbuild.
import qrcode from "qrcode-generator";

/** The UTF-8 bytes of `text` as a string of char codes 0-255 (what the encoder's byte mode reads). */
function utf8Binary(text: string): string {
  let out = "";
  for (const b of new TextEncoder().encode(text)) out += String.fromCharCode(b);
  return out;
}

/**
 * A canvas with `text` as a QR code (error correction M, the smallest version that fits),
 * dark modules on white with the 4-module quiet zone, `scale` pixels per module.
 */
export function qrCanvas(text: string, label: string, scale = 6): HTMLCanvasElement {
  const qr = qrcode(0, "M");
  qr.addData(utf8Binary(text), "Byte");
  qr.make();
  const n = qr.getModuleCount();
  const quiet = 4;
  const size = (n + 2 * quiet) * scale;
  const canvas = document.createElement("canvas");
  canvas.width = size;
  canvas.height = size;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", label);
  const ctx = canvas.getContext("2d");
  if (!ctx) return canvas;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, size, size);
  ctx.fillStyle = "#000";
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      if (qr.isDark(r, c)) ctx.fillRect((c + quiet) * scale, (r + quiet) * scale, scale, scale);
    }
  }
  return canvas;
}
