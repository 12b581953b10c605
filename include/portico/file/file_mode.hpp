// portico: how a file is opened — the access asked for, what happens whether
// or not it exists, and what others may do with it meanwhile.
#pragma once

#include <portico/config.hpp>

PORTICO_NAMESPACE_BEGIN

/// The access a file is opened for.
enum class file_access : unsigned char {
    read,      ///< reads only
    write,     ///< writes only
    read_write ///< both
};

/// What opening does when the file exists, and when it does not.
enum class file_creation : unsigned char {
    open_existing,    ///< opens the file; file_not_found if there is none
    create_new,       ///< creates the file; file_exists if there is one
    create_always,    ///< creates the file, or empties the one there is
    open_always,      ///< opens the file, or creates it if there is none
    truncate_existing ///< opens and empties the file (needs write access); file_not_found if there is none
};

/// What other handles may do with the file while it is open (Windows'
/// sharing modes: an open that asks for an access another holder does not
/// share fails with file_in_use, and so does this open if it does not share
/// what a holder already has).
enum class file_share : unsigned char {
    none,      ///< nobody else may open it for reading or writing
    read,      ///< others may read it
    write,     ///< others may write it
    read_write ///< others may read and write it
};

PORTICO_NAMESPACE_END
