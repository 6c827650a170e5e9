"""Protocol adapters: JSON documents of the Open Inference Protocol (V2) and KServe V1 to arrays and back."""
