#include "scimsync/result.h"

namespace scimsync {

const char* ErrorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kTransient:
      return "transient";
    case ErrorKind::kPermanent:
      return "permanent";
    case ErrorKind::kAuth:
      return "auth";
    case ErrorKind::kConflict:
      return "conflict";
    case ErrorKind::kInvalid:
      return "invalid";
    case ErrorKind::kNotFound:
      return "not_found";
  }
  return "permanent";
}

}  // namespace scimsync
