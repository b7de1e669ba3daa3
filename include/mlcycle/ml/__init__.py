"""Pure machine learning over frames: training, evaluation, the gate's rules, the ONNX twin
and the chunked scorer. No registry, no lake layout beyond reading and writing files."""
