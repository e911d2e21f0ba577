"""Model-format readers: what a GGUF file or a Hugging Face directory says about itself, without loading it."""
