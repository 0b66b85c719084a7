"""Pure, bounded image code: safe decoding, resizing for the model, composing and encoding."""
