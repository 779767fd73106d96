# Defaults; the sage-image builder sets the provenance and source paths.
export DIB_CC_USER=${DIB_CC_USER:-cc}
export DIB_CC_UID=${DIB_CC_UID:-1000}
export DIB_CC_GROUPS=${DIB_CC_GROUPS:-adm,systemd-journal}
export DIB_CC_SERIAL_AUTOLOGIN=${DIB_CC_SERIAL_AUTOLOGIN:-0}
export DIB_CC_ADMIN_USER=${DIB_CC_ADMIN_USER:-}
export DIB_CLOUD_INIT_DATASOURCES=${DIB_CLOUD_INIT_DATASOURCES:-"ConfigDrive, OpenStack"}
