// WebGL scatter of a projection: coordinates uploaded once as the Float32Array that came
// off the wire; colours are one Uint8 RGB buffer; pan/zoom only change two uniforms, so a
// frame costs one draw call whatever N. Hover/click use a uniform grid built once.
import { apiUrl, call } from "./common.js";

// The initial view: data [-1, 1] fills 95% of the shorter side, centred, y up. Tests
// compute pixel positions with the same rule (see toPixel).
const FILL = 0.95;
const GRID = 128;

export async function loadProjection(depth) {
  const response = await call(`${apiUrl("/projection")}?depth=${encodeURIComponent(depth)}`);
  const buffer = await response.arrayBuffer();
  const count = Number(response.headers.get("X-Strata-Count"));
  const ids64 = new BigInt64Array(buffer, 0, count);
  const ids = new Float64Array(count);
  for (let i = 0; i < count; i++) ids[i] = Number(ids64[i]);
  const xy = new Float32Array(buffer, 8 * count, 2 * count);
  return { count, ids, xy, depth: response.headers.get("X-Strata-Depth"), bytes: buffer.byteLength };
}

const VERTEX = `
attribute vec2 a_xy;
attribute vec3 a_colour;
uniform vec2 u_scale;
uniform vec2 u_offset;
uniform float u_size;
varying vec3 v_colour;
void main() {
  gl_Position = vec4(a_xy * u_scale + u_offset, 0.0, 1.0);
  gl_PointSize = u_size;
  v_colour = a_colour;
}`;
const FRAGMENT = `
precision mediump float;
varying vec3 v_colour;
uniform float u_ring;
void main() {
  vec2 d = gl_PointCoord - vec2(0.5);
  float r = length(d);
  if (r > 0.5) discard;
  vec3 c = (u_ring > 0.5 && r > 0.3) ? vec3(0.0) : v_colour;
  gl_FragColor = vec4(c, 1.0);
}`;

function compile(gl, type, source) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
  return shader;
}

export class Scatter {
  constructor(canvas, { pointSize = 4 } = {}) {
    this.canvas = canvas;
    // No preserveDrawingBuffer: the compositor may swap instead of copying each frame.
    this.gl = canvas.getContext("webgl2", { antialias: false })
      || canvas.getContext("webgl", { antialias: false });
    if (!this.gl) throw new Error("this browser has no WebGL: the map needs it");
    const gl = this.gl;
    this.uintIndices = !!(window.WebGL2RenderingContext && gl instanceof WebGL2RenderingContext)
      || !!gl.getExtension("OES_element_index_uint");
    const program = gl.createProgram();
    gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FRAGMENT));
    gl.linkProgram(program);
    gl.useProgram(program);
    this.program = program;
    this.loc = {
      xy: gl.getAttribLocation(program, "a_xy"),
      colour: gl.getAttribLocation(program, "a_colour"),
      scale: gl.getUniformLocation(program, "u_scale"),
      offset: gl.getUniformLocation(program, "u_offset"),
      size: gl.getUniformLocation(program, "u_size"),
      ring: gl.getUniformLocation(program, "u_ring"),
    };
    this.xyBuffer = gl.createBuffer();
    this.colourBuffer = gl.createBuffer();
    this.highlightBuffer = gl.createBuffer();
    this.highlightCount = 0;
    this.pointSize = pointSize;
    this.view = { zoom: 1, panX: 0, panY: 0 };
    this.count = 0;
    this.resize();
  }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    this.width = this.canvas.clientWidth;
    this.height = this.canvas.clientHeight;
    this.canvas.width = Math.round(this.width * ratio);
    this.canvas.height = Math.round(this.height * ratio);
    this.ratio = ratio;
  }

  setData(ids, xy) {
    const gl = this.gl;
    this.ids = ids;
    this.xy = xy;
    this.count = ids.length;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.xyBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, xy, gl.STATIC_DRAW);
    this.indexOf = new Map();
    for (let i = 0; i < this.count; i++) this.indexOf.set(ids[i], i);
    this.buildGrid();
  }

  setColours(rgb) {
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.colourBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, rgb, gl.DYNAMIC_DRAW);
  }

  setHighlight(indices) {
    const gl = this.gl;
    const array = this.uintIndices ? Uint32Array.from(indices) : Uint16Array.from(indices.filter((i) => i < 65536));
    this.highlightType = this.uintIndices ? gl.UNSIGNED_INT : gl.UNSIGNED_SHORT;
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.highlightBuffer);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, array, gl.DYNAMIC_DRAW);
    this.highlightCount = array.length;
  }

  get unit() { return (Math.min(this.width, this.height) / 2) * FILL; }

  toPixel(x, y) {
    const { zoom, panX, panY } = this.view;
    return [this.width / 2 + (x * zoom + panX) * this.unit, this.height / 2 - (y * zoom + panY) * this.unit];
  }

  toData(px, py) {
    const { zoom, panX, panY } = this.view;
    return [((px - this.width / 2) / this.unit - panX) / zoom, ((this.height / 2 - py) / this.unit - panY) / zoom];
  }

  draw() {
    const gl = this.gl;
    const { zoom, panX, panY } = this.view;
    const sx = (2 * this.unit) / this.width;
    const sy = (2 * this.unit) / this.height;
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    gl.clearColor(1, 1, 1, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.uniform2f(this.loc.scale, zoom * sx, zoom * sy);
    gl.uniform2f(this.loc.offset, panX * sx, panY * sy);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.xyBuffer);
    gl.enableVertexAttribArray(this.loc.xy);
    gl.vertexAttribPointer(this.loc.xy, 2, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.colourBuffer);
    gl.enableVertexAttribArray(this.loc.colour);
    gl.vertexAttribPointer(this.loc.colour, 3, gl.UNSIGNED_BYTE, true, 0, 0);
    const size = Math.max(2, Math.min(14, this.pointSize * Math.sqrt(zoom))) * this.ratio;
    gl.uniform1f(this.loc.size, size);
    gl.uniform1f(this.loc.ring, 0);
    gl.drawArrays(gl.POINTS, 0, this.count);
    if (this.highlightCount) {
      gl.uniform1f(this.loc.size, size * 2.2);
      gl.uniform1f(this.loc.ring, 1);
      gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.highlightBuffer);
      gl.drawElements(gl.POINTS, this.highlightCount, this.highlightType, 0);
    }
  }

  // Draw and wait for the GPU (a 1-pixel read forces it): the cost of one frame.
  drawSynced() {
    this.draw();
    this.gl.readPixels(0, 0, 1, 1, this.gl.RGBA, this.gl.UNSIGNED_BYTE, new Uint8Array(4));
  }

  buildGrid() {
    const n = this.count;
    const cell = new Int32Array(n);
    const counts = new Int32Array(GRID * GRID + 1);
    for (let i = 0; i < n; i++) {
      const c = this.cellOf(this.xy[2 * i], this.xy[2 * i + 1]);
      cell[i] = c;
      counts[c + 1]++;
    }
    for (let c = 0; c < GRID * GRID; c++) counts[c + 1] += counts[c];
    const order = new Int32Array(n);
    const fill = counts.slice(0, GRID * GRID);
    for (let i = 0; i < n; i++) order[fill[cell[i]]++] = i;
    this.grid = { starts: counts, order };
  }

  cellOf(x, y) {
    const gx = Math.min(GRID - 1, Math.max(0, Math.floor(((x + 1.05) / 2.1) * GRID)));
    const gy = Math.min(GRID - 1, Math.max(0, Math.floor(((y + 1.05) / 2.1) * GRID)));
    return gy * GRID + gx;
  }

  // The point nearest to a pixel within `radius` pixels, or -1.
  pick(px, py, radius = 6) {
    if (!this.count) return -1;
    const [x, y] = this.toData(px, py);
    const r = radius / (this.unit * this.view.zoom);
    const cellSize = 2.1 / GRID;
    const span = Math.ceil(r / cellSize);
    const [cx, cy] = [this.cellOf(x, y) % GRID, Math.floor(this.cellOf(x, y) / GRID)];
    let best = -1;
    let bestD = r * r;
    for (let gy = Math.max(0, cy - span); gy <= Math.min(GRID - 1, cy + span); gy++) {
      for (let gx = Math.max(0, cx - span); gx <= Math.min(GRID - 1, cx + span); gx++) {
        const c = gy * GRID + gx;
        for (let k = this.grid.starts[c]; k < this.grid.starts[c + 1]; k++) {
          const i = this.grid.order[k];
          const dx = this.xy[2 * i] - x;
          const dy = this.xy[2 * i + 1] - y;
          const d = dx * dx + dy * dy;
          if (d <= bestD) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }

  inBox(x0, y0, x1, y1) {
    const [left, right] = [Math.min(x0, x1), Math.max(x0, x1)];
    const [top, bottom] = [Math.min(y0, y1), Math.max(y0, y1)];
    const out = [];
    for (let i = 0; i < this.count; i++) {
      const [px, py] = this.toPixel(this.xy[2 * i], this.xy[2 * i + 1]);
      if (px >= left && px <= right && py >= top && py <= bottom) out.push(i);
    }
    return out;
  }

  inPolygon(points) {
    const out = [];
    for (let i = 0; i < this.count; i++) {
      const [px, py] = this.toPixel(this.xy[2 * i], this.xy[2 * i + 1]);
      let inside = false;
      for (let a = 0, b = points.length - 1; a < points.length; b = a++) {
        const [xa, ya] = points[a];
        const [xb, yb] = points[b];
        if ((ya > py) !== (yb > py) && px < ((xb - xa) * (py - ya)) / (yb - ya) + xa) inside = !inside;
      }
      if (inside) out.push(i);
    }
    return out;
  }

  zoomAt(px, py, factor) {
    const { zoom, panX, panY } = this.view;
    const next = Math.min(500, Math.max(0.2, zoom * factor));
    const u = (px - this.width / 2) / this.unit;
    const v = (this.height / 2 - py) / this.unit;
    const [x, y] = [(u - panX) / zoom, (v - panY) / zoom];
    this.view = { zoom: next, panX: u - x * next, panY: v - y * next };
  }

  panBy(dx, dy) {
    this.view.panX += dx / this.unit;
    this.view.panY -= dy / this.unit;
  }

  // Frame time under continuous panning: the requestAnimationFrame interval while each
  // frame pans and redraws (what a user sees, compositor included), then the cost of one
  // frame alone: draw + wait for the GPU (a 1-pixel read), in a tight loop.
  bench(frames = 120) {
    return new Promise((resolve) => {
      const intervals = [];
      let last = null;
      let left = frames;
      const step = (now) => {
        if (last !== null) intervals.push(now - last);
        last = now;
        this.panBy(Math.sin(left / 9) * 3, Math.cos(left / 11) * 3);
        this.draw();
        if (--left > 0) {
          requestAnimationFrame(step);
          return;
        }
        const draws = [];
        for (let i = 0; i < frames; i++) {
          this.panBy(Math.sin(i / 9) * 3, Math.cos(i / 11) * 3);
          const began = performance.now();
          this.drawSynced();
          draws.push(performance.now() - began);
        }
        resolve({ frames, draw_ms: stats(draws), interval_ms: stats(intervals) });
      };
      requestAnimationFrame(step);
    });
  }
}

function stats(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mean = values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
  return { mean, p50: sorted[Math.floor(sorted.length / 2)] || 0, p95: sorted[Math.floor(sorted.length * 0.95)] || 0 };
}

// -- colours ------------------------------------------------------------------------------

function hsl(h, s, l) {
  const k = (n) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  return [Math.round(255 * f(0)), Math.round(255 * f(8)), Math.round(255 * f(4))];
}

// As many distinct colours as classes: golden-angle hues, three lightness bands.
export function palette(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const band = i % 3;
    out.push(hsl((i * 137.508) % 360, band === 1 ? 0.55 : 0.72, [0.48, 0.62, 0.36][band]));
  }
  return out;
}

const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

export function ramp(t) {
  const x = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  const f = x - i;
  return RAMP[i].map((c, k) => Math.round(c + (RAMP[i + 1][k] - c) * f));
}

export const UNLABELLED = [185, 185, 185];
