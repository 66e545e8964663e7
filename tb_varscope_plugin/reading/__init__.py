"""Reading event files: TFRecord framing, event decoding, the per-run and per-logdir index, parallel reading."""
