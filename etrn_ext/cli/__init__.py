"""etrnctl: thin click commands over ``etrn_ext.service``."""
