"""semires: semi-supervised referring expression segmentation guided by SAM (SemiRES)."""

__version__ = "0.1.0"
