"""DELBench: which small subset of an endoscopy pretraining pool pretrains as well as all of it?"""
