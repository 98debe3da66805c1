"""Load the single files ComfyUI users already have into a `WanSession`.

One module per capability:
- `stream`: read one tensor at a time from a safetensors file (plain reads, no mmap, no whole-file dict);
- `quant`: weight formats (fp32/fp16/bf16, plain fp8, scaled fp8, per-layer `comfy_quant` fp8), their
  dequantization, and `Fp8Linear` (float8 weight + scale kept in memory, computed in bf16);
- `detect`: what a file is, from tensor names and shapes only (never the file name);
- `keymaps`: original Wan / ComfyUI names → diffusers names (diffusers' own converters where they exist);
- `vae22`: the Wan2.2 VAE key map, which diffusers' single-file converter does not know;
- `umt5`: the umT5 text encoder and its tokenizer from one ComfyUI text-encoder file;
- `lora`: LoRAs for either expert, applied without touching the input session;
- `load`: `load_comfy_files`, the entry point the node calls.

Import the submodules directly (`from wanlean.video.loaders.comfy_files.load import load_comfy_files`): this package
imports nothing heavy by itself.

Configs come from `wanlean/configs/*.json` (shipped with the pack) plus the shapes in the file, so nothing
is fetched.
"""
