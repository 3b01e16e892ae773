"""Lightning callbacks: metrics, image panels, ablation/comparison drivers, debugging aids."""
