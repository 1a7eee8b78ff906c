"""Reading a synthesized cloud assembly for people: the compliance report and the architecture
picture. Nothing here runs during synth; it reads what synth wrote to ``cdk.out``."""
